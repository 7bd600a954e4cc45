"""Supported Istio versions → pinned kind, kubectl and digest-pinned node image (from kind release notes)."""

from __future__ import annotations

from dataclasses import dataclass

from meshjwt.errors import ConfigError

#: kind release whose published node images the table below uses.
KIND_VERSION = "v0.32.0"
#: kubectl client; within the version skew policy of the newest node image.
KUBECTL_VERSION = "v1.36.1"
#: the oldest kubectl client the suite supports with ``--kubectl-path`` (kind, cluster): exec over WebSocket
OLDEST_KUBECTL = "1.30"


@dataclass(frozen=True)
class IstioRelease:
    """One supported Istio minor: the patch we install and the Kubernetes node it runs on in kind."""

    minor: str
    patch: str
    node_image: str  # kindest/node:vX.Y.Z@sha256:... (from the kind release notes)
    kubernetes: tuple[str, str]  # supported Kubernetes range (from Istio's support table)
    source: str = ""  # where the patch and the pairing come from
    end_of_life: str | None = None  # date Istio's support ended (the nightly covers supported minors only)

    @property
    def node_version(self) -> str:
        return self.node_image.split(":", 1)[1].split("@", 1)[0]


#: Istio minor → release; patches carry the JWKS private-key-leak fix (1.27.8 / 1.28.5 / 1.29.1).
ISTIO_RELEASES: dict[str, IstioRelease] = {
    r.minor: r
    for r in (
        IstioRelease(
            "1.31",
            "1.31.1",
            "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5",
            ("1.33", "1.37"),
            source="istio.io news: Istio 1.31.1 announcement (security update GHSA-qm8v-g4f9-qhjx); Kubernetes range "
            "inferred from the 1.30 row plus one minor (check Istio's supportStatus.yml); node image as for 1.30",
        ),
        IstioRelease(
            "1.30",
            "1.30.5",
            "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5",
            ("1.32", "1.36"),
            source="shared/reference/istio-jwt-semantics.md §6 (latest patch 1.30.5, security fixes; istio.io lists "
            "1.30.1-1.30.4 by 2026-08-27); node image from the kind v0.32.0 release notes",
        ),
        IstioRelease(
            "1.29",
            "1.29.2",
            "kindest/node:v1.35.5@sha256:ce977ae6d65918d0b58a5f8b5e940429c2ce42fa3a5619ec2bbc60b949c0ac95",
            ("1.31", "1.35"),
            source="JWKS key-leak fix from 1.29.1 (releasenotes/notes/jwks-private-key-leak.yaml)",
            end_of_life="2026-10-15",
        ),
        IstioRelease(
            "1.28",
            "1.28.5",
            "kindest/node:v1.34.8@sha256:02722c2dedddcfc00febf5d27fbeb9b7b2c14294c82109ff4a85d89ac9ba3256",
            ("1.29", "1.34"),
            source="JWKS key-leak fix from 1.28.5 (releasenotes/notes/jwks-private-key-leak.yaml)",
            end_of_life="2026-07",
        ),
        IstioRelease(
            "1.27",
            "1.27.8",
            "kindest/node:v1.33.12@sha256:3f5c8443c620245e4d355cfe09e96a91ead32ceaa569d3f1ca9edf0cb2fe2ff4",
            ("1.29", "1.33"),
            source="JWKS key-leak fix from 1.27.8 (releasenotes/notes/jwks-private-key-leak.yaml)",
            end_of_life="2026-04",
        ),
    )
}

#: what --istio-version defaults to (the --mesh-version default too): a supported minor at its latest patch
DEFAULT_ISTIO = "1.30"
#: the minors the nightly covers: supported ones only, not end-of-life
SUPPORTED = tuple(m for m, r in ISTIO_RELEASES.items() if r.end_of_life is None)


def istio_release(version: str | None) -> IstioRelease:
    """Resolve ``1.29`` or ``1.29.2`` (a patch of a supported minor) to a release; ConfigError otherwise."""
    version = (version or DEFAULT_ISTIO).removeprefix("v")
    parts = version.split(".")
    minor = ".".join(parts[:2])
    if minor not in ISTIO_RELEASES or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(
            f"unsupported --istio-version {version!r}: choose one of {', '.join(sorted(ISTIO_RELEASES))}"
        )
    release = ISTIO_RELEASES[minor]
    if len(parts) == 3 and version != release.patch:
        return IstioRelease(minor, version, release.node_image, release.kubernetes)
    return release


def kube_minor(version: str) -> tuple[int, int]:
    """``v1.35.5`` → (1, 35)."""
    major, minor = version.removeprefix("v").split(".")[:2]
    return int(major), int(minor)
