"""Download verification: pinned sha256 accepted, a wrong one refused, nothing cached on refusal."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from meshjwt.errors import ConfigError, EnvironmentProblem
from meshjwt.kube import binaries


@pytest.fixture
def served(tmp_path):
    """A tiny HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def item(url: str, member: str | None = None, tool: str = "kind") -> binaries.Asset:
    return binaries.Asset(tool, "v9.9.9", "linux", "amd64", url, url + ".sha256sum", member)


def test_right_sha256_downloads_and_caches(served, cache):
    root, base = served
    (root / "kind").write_bytes(b"#!/bin/sh\necho kind\n")
    digest = hashlib.sha256(b"#!/bin/sh\necho kind\n").hexdigest()
    path = binaries.ensure(item(f"{base}/kind"), sha256=digest, log=lambda _: None)
    assert path.read_bytes() == b"#!/bin/sh\necho kind\n" and path.stat().st_mode & 0o111
    (root / "kind").unlink()  # second call is served from the cache
    assert binaries.ensure(item(f"{base}/kind"), sha256=digest, log=lambda _: None) == path


def test_wrong_sha256_is_refused_and_not_cached(served, cache):
    root, base = served
    (root / "kind").write_bytes(b"tampered")
    with pytest.raises(EnvironmentProblem, match="sha256 mismatch .* refusing to use it"):
        binaries.ensure(item(f"{base}/kind"), sha256="0" * 64, log=lambda _: None)
    assert not list(cache.rglob("kind"))


def test_file_url_and_publisher_checksum_when_unpinned(tmp_path, cache):
    asset_file = tmp_path / "kind-linux-amd64"
    asset_file.write_bytes(b"binary")
    (tmp_path / "kind-linux-amd64.sha256sum").write_text(f"{hashlib.sha256(b'binary').hexdigest()}  kind\n")
    logs: list[str] = []
    path = binaries.ensure(item(asset_file.as_uri()), log=logs.append)
    assert path.read_bytes() == b"binary" and any("not a pin" in line for line in logs)
    (tmp_path / "kind-linux-amd64.sha256sum").write_text("f" * 64 + "  kind\n")
    with pytest.raises(EnvironmentProblem, match="sha256 mismatch"):
        binaries.ensure(item(asset_file.as_uri()), sha256="e" * 64, log=logs.append)


def test_istioctl_is_extracted_from_verified_tarball(served):
    root, base = served
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("istioctl")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"ictl"))
    (root / "istioctl.tar.gz").write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    path = binaries.ensure(item(f"{base}/istioctl.tar.gz", "istioctl", "istioctl"), sha256=digest, log=print)
    assert path.read_bytes() == b"ictl"


def test_unreachable_download_is_one_line(cache):
    with pytest.raises(EnvironmentProblem, match="cannot download .*--kind-path"):
        binaries.ensure(item("http://127.0.0.1:9/kind"), sha256="0" * 64, log=lambda _: None)


def test_asset_urls_and_platforms():
    assert binaries.asset("kind", "v0.32.0", "linux", "amd64").url.endswith("/v0.32.0/kind-linux-amd64")
    assert binaries.asset("kubectl", "v1.36.1", "darwin", "arm64").url == (
        "https://dl.k8s.io/release/v1.36.1/bin/darwin/arm64/kubectl"
    )
    istioctl = binaries.asset("istioctl", "1.30.3", "darwin", "arm64")
    assert istioctl.url.endswith("/1.30.3/istioctl-1.30.3-osx-arm64.tar.gz") and istioctl.member == "istioctl"
    assert binaries.asset("istioctl", "1.30.3", "darwin", "amd64").url.endswith("/istioctl-1.30.3-osx.tar.gz")
    assert binaries.asset("istioctl", "1.30.3", "linux", "arm64").url.endswith("/istioctl-1.30.3-linux-arm64.tar.gz")
    assert binaries.host_platform("Linux", "x86_64") == ("linux", "amd64")
    assert binaries.host_platform("Darwin", "arm64") == ("darwin", "arm64")
    with pytest.raises(EnvironmentProblem, match="--kind-path"):
        binaries.host_platform("Windows", "AMD64")
    for (tool, version, *_), digest in binaries.PINNED_SHA256.items():
        assert tool in ("kind", "kubectl", "istioctl") and len(digest) == 64 and version.startswith("v")


def test_local_binary_paths(tmp_path):
    exe = tmp_path / "kind"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert binaries.resolve("kind", "v0.32.0", str(exe)) == exe
    with pytest.raises(ConfigError, match="--kind-path"):
        binaries.resolve("kind", "v0.32.0", str(tmp_path / "missing"))
