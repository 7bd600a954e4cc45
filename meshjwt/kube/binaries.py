"""Pinned kind / kubectl / istioctl: download for this OS/arch, verify sha256, cache; or local paths."""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from meshjwt.errors import ConfigError, EnvironmentProblem

#: (tool, version, os, arch) → sha256 of the downloaded asset (binary, or istioctl's tar.gz).
#: Each was cross-checked against several independent public pins; add rows as they are verified.
PINNED_SHA256: dict[tuple[str, str, str, str], str] = {
    ("kind", "v0.32.0", "linux", "amd64"): "50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54",
    (
        "kubectl",
        "v1.36.1",
        "linux",
        "amd64",
    ): "629d3f410e09bf49b64ae7079f7f0bda1191efed311f7d37fdbab0ad5b0ec2b7",
}

ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class Asset:
    """Where one tool's release asset lives, and the publisher's checksum file next to it."""

    tool: str
    version: str
    os: str
    arch: str
    url: str
    checksum_url: str
    member: str | None = None  # file to extract from a tar.gz asset

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.tool, self.version, self.os, self.arch)


def host_platform(system: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """(os, arch) in release-asset spelling: ('linux', 'amd64'), ('darwin', 'arm64')."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    if system not in ("linux", "darwin") or machine not in ARCHES:
        raise EnvironmentProblem(
            f"no pinned kind/kubectl/istioctl for {system}/{machine}: pass --kind-path, --kubectl-path"
            " and --istioctl-path"
        )
    return system, ARCHES[machine]


def asset(tool: str, version: str, os_name: str, arch: str) -> Asset:
    """The release asset of ``tool`` at ``version`` for one platform."""
    if tool == "kind":
        url = f"https://github.com/kubernetes-sigs/kind/releases/download/{version}/kind-{os_name}-{arch}"
        return Asset(tool, version, os_name, arch, url, url + ".sha256sum")
    if tool == "kubectl":
        url = f"https://dl.k8s.io/release/{version}/bin/{os_name}/{arch}/kubectl"
        return Asset(tool, version, os_name, arch, url, url + ".sha256")
    if tool == "istioctl":
        # Istio's release assets: linux-amd64, linux-arm64, osx (Intel macOS: no arch suffix), osx-arm64
        platform_part = {("darwin", "amd64"): "osx", ("darwin", "arm64"): "osx-arm64"}.get((os_name, arch),
                                                                                            f"{os_name}-{arch}")
        name = f"istioctl-{version}-{platform_part}.tar.gz"
        url = f"https://github.com/istio/istio/releases/download/{version}/{name}"
        return Asset(tool, version, os_name, arch, url, url + ".sha256", member="istioctl")
    raise ConfigError(f"unknown tool {tool!r}")


def cache_dir() -> Path:
    """``$MESHJWT_CACHE`` or ``~/.cache/meshjwt``."""
    return Path(os.environ.get("MESHJWT_CACHE") or Path.home() / ".cache" / "meshjwt")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (pinned https / test file://)
            return response.read()
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot download {url}: {exc}; air-gapped? pass --kind-path/--kubectl-path/--istioctl-path"
        ) from None


class FetchFailed(Exception):
    """A pinned download got no good answer: ``http`` is the HTTP status (None: no answer at all), ``reason`` why."""

    def __init__(self, url: str, reason: str, http: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.http = url, reason, http
        self.host = urllib.parse.urlsplit(url).netloc


class ChecksumMismatch(Exception):
    """A pinned download whose bytes are not the pinned ones (``actual`` is their sha256)."""

    def __init__(self, url: str, actual: str, pinned: str) -> None:
        super().__init__(f"{url} has sha256 {actual}, pinned {pinned}")
        self.url, self.actual, self.pinned = url, actual, pinned


def fetch_pinned(url: str, sha256: str, timeout: float) -> bytes:
    """GET ``url`` once and return its bytes if their sha256 is ``sha256``; FetchFailed or ChecksumMismatch (each
    caller says it in its own one line). The pinned downloads of Istio's files (golden data, FakeJwks source)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - a pinned https URL (tests: http)
            body = answer.read()
    except urllib.error.HTTPError as exc:
        raise FetchFailed(url, f"HTTP {exc.code} {exc.reason}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchFailed(url, str(getattr(exc, "reason", exc))) from None
    actual = sha256_of(body)
    if actual != sha256:
        raise ChecksumMismatch(url, actual, sha256)
    return body


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file beside it, so no reader sees a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(target)


def expected_sha256(item: Asset, timeout: float = 30.0) -> tuple[str, str]:
    """The sha256 to check against and where it came from ('pinned' or 'publisher checksum file')."""
    pinned = PINNED_SHA256.get(item.key)
    if pinned:
        return pinned, "pinned"
    text = _fetch(item.checksum_url, timeout).decode("ascii", "replace").split()
    if not text or len(text[0]) != 64:
        raise EnvironmentProblem(f"unreadable checksum file {item.checksum_url}")
    return text[0].lower(), "publisher checksum file"


def _extract(data: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for entry in archive.getmembers():
            if entry.isfile() and Path(entry.name).name == member:
                extracted = archive.extractfile(entry)
                if extracted is not None:
                    return extracted.read()
    raise EnvironmentProblem(f"{member} not found in the downloaded archive")


def ensure(item: Asset, *, sha256: str | None = None, timeout: float = 120.0, log=None) -> Path:
    """Return the cached, verified binary for ``item``, downloading it once. Refuses a sha256 mismatch."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    target_dir = cache_dir() / "bin" / f"{item.tool}-{item.version}-{item.os}-{item.arch}"
    binary = target_dir / item.tool
    stamp = target_dir / "asset.sha256"
    if sha256 is None:
        pinned = PINNED_SHA256.get(item.key)
        if pinned is None and binary.exists() and stamp.exists():
            return binary  # verified against the publisher's checksum when it was cached
        sha256, source = (pinned, "pinned") if pinned else expected_sha256(item)
    else:
        source = "given"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == sha256:
        return binary
    log(f"meshjwt: downloading {item.url}")
    data = _fetch(item.url, timeout)
    actual = sha256_of(data)
    if actual != sha256:
        raise EnvironmentProblem(
            f"sha256 mismatch for {item.url}: expected {sha256} ({source}), got {actual}; refusing to use it"
        )
    payload = _extract(data, item.member) if item.member else data
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".{item.tool}.tmp"
    tmp.write_bytes(payload)
    tmp.chmod(0o755)
    tmp.replace(binary)
    stamp.write_text(sha256 + "\n")
    if source != "pinned":
        log(f"meshjwt: {item.tool} {item.version} verified against the {source}, not a pin")
    return binary


def resolve(tool: str, version: str, local_path: str | None) -> Path:
    """A user-given local binary (air-gapped sites) or the pinned download for this host."""
    if local_path:
        path = Path(local_path).expanduser()
        found = path if path.is_file() else (Path(p) if (p := shutil.which(local_path)) else None)
        if found is None or not os.access(found, os.X_OK):
            raise ConfigError(f"--{tool}-path {local_path!r} is not an executable file")
        return found
    os_name, arch = host_platform()
    return ensure(asset(tool, version, os_name, arch))
