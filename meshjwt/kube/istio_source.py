"""Istio's leaked FakeJwks private key, read at run time from Istio's source (never shipped with the suite).

istiod 1.21 … 1.27.7, 1.28.0 … 1.28.4 and 1.29.0 inline ``FakeJwks`` for a jwksUri it cannot fetch, and the
private half of that set is in Istio's source (``releasenotes/notes/jwks-private-key-leak.yaml``). On kind and
cluster the leak case signs with that very key: the file is downloaded once from a pinned commit, checked
against its sha256 pin, cached under ``$MESHJWT_CACHE/istio-source/``, and the PEM private key read from it.
Offline, or without a pin, the case is unsupported with a one-line reason (TargetCannot), never passed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from meshjwt.errors import EnvironmentProblem, TargetCannot
from meshjwt.kube.binaries import ChecksumMismatch, FetchFailed, cache_dir, fetch_pinned, sha256_of, write_atomically

#: ``const FakeJwks = `{"keys": [{... "d": ..., "p": ..., "q": ...}]}``` in pilot/pkg/model/jwks_resolver.go
FAKE_JWKS_CONST = re.compile(r"const FakeJwks = `(\{.*?\})`", re.DOTALL)


@dataclass(frozen=True)
class SourcePin:
    """One file of Istio's source at a commit, and the sha256 of its bytes."""

    repo: str
    commit: str
    path: str
    sha256: str
    base_url: str = "https://raw.githubusercontent.com"

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.repo}/{self.commit}/{self.path}"


#: where Istio's source holds the FakeJwks private key: ``pilot/pkg/model/jwks_resolver.go`` at the parent of
#: 2b251c0656d ("security fixes from 1.29.1", which removed it; ``use static fake JWKS`` d046a5d31ed added it).
#: Commit and sha256 verified against the blob in Istio's git history (``git show 41e6f10…:pilot/pkg/model/
#: jwks_resolver.go | sha256sum``), the bytes raw.githubusercontent.com serves for that commit and path.
FAKE_JWKS_PIN: SourcePin | None = SourcePin(
    repo="istio/istio", commit="41e6f106681fe63b064d8a755f86b696f71c7fbd", path="pilot/pkg/model/jwks_resolver.go",
    sha256="e21e9a1a7b03c6fb80cc5471098a4bccfb5db0f8aeec7ca62db392e9db99f2cf",
)
NO_PIN = ("no verified pin of the Istio source file holding the FakeJwks private key (meshjwt/kube/istio_source.py "
          "FAKE_JWKS_PIN): the leaked key cannot be read, so this case cannot sign with it")


def fetch(pin: SourcePin, timeout: float = 30.0) -> bytes:
    """The pinned file's bytes: from the cache, else downloaded once and checked against the pin's sha256.
    Offline: TargetCannot (one line); a body that is not the pinned one: EnvironmentProblem (nothing cached)."""
    cached = cached_path(pin)
    if cached.is_file() and sha256_of(kept := cached.read_bytes()) == pin.sha256:
        return kept
    try:
        body = fetch_pinned(pin.url, pin.sha256, timeout)
    except FetchFailed as exc:
        raise TargetCannot(f"offline: cannot read Istio's FakeJwks key from {pin.url} ({exc.reason})") from None
    except ChecksumMismatch as exc:
        raise EnvironmentProblem(f"{pin.url} has sha256 {exc.actual}, not the pinned {pin.sha256}: "
                                 "refusing it") from None
    write_atomically(cached, body)
    return body


def private_jwk(source: bytes) -> dict:
    """The private RSA JWK of ``const FakeJwks`` (its one key, with ``d``, ``p``, ``q``) in the pinned source."""
    found = FAKE_JWKS_CONST.findall(source.decode(errors="replace"))
    keys = json.loads(found[0]).get("keys", []) if len(found) == 1 else []
    if len(keys) != 1 or not {"n", "e", "d"} <= set(keys[0]):
        raise EnvironmentProblem("expected one private RSA key in const FakeJwks of the pinned Istio source")
    return keys[0]


def leaked_fake_jwks_key(pin: SourcePin | None = FAKE_JWKS_PIN, timeout: float = 30.0) -> object:
    """Istio's leaked FakeJwks signing key, as a :class:`meshjwt.keys.SigningKey` (RS256, no kid, so that it
    is tried as FakeJwks's key is); TargetCannot when there is no pin or the machine is offline."""
    from jwt.algorithms import RSAAlgorithm

    from meshjwt.keys import SigningKey

    if pin is None:
        raise TargetCannot(NO_PIN)
    private = RSAAlgorithm.from_jwk(json.dumps(private_jwk(fetch(pin, timeout))))
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)  # type: ignore[union-attr,arg-type]
    return SigningKey(alg="RS256", kid="", private=private, jwk=jwk)


def cached_path(pin: SourcePin) -> Path:
    """Where :func:`fetch` caches ``pin``'s file."""
    return cache_dir() / "istio-source" / pin.sha256
