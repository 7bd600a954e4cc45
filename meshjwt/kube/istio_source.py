"""Istio's leaked FakeJwks private key, read at run time from Istio's source (never shipped with the suite).

istiod 1.21 … 1.27.7, 1.28.0 … 1.28.4 and 1.29.0 inline ``FakeJwks`` for a jwksUri it cannot fetch, and the
private half of that set is in Istio's source (``releasenotes/notes/jwks-private-key-leak.yaml``). On kind and
cluster the leak case signs with that very key: the file is downloaded once from a pinned commit, checked
against its sha256 pin, cached under ``$MESHJWT_CACHE/istio-source/``, and the PEM private key read from it.
Offline, or without a pin, the case is unsupported with a one-line reason (TargetCannot), never passed.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from meshjwt.errors import EnvironmentProblem, TargetCannot
from meshjwt.kube.binaries import cache_dir

PEM = re.compile(r"-----BEGIN (?:RSA )?PRIVATE KEY-----[A-Za-z0-9+/=\s\\n]+?-----END (?:RSA )?PRIVATE KEY-----")


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


#: where Istio's source holds the FakeJwks private key. Not pinned yet: this build was made offline and could not
#: read the file to verify a commit and its sha256 (a pin must be checked against the real bytes, never guessed).
#: Set it (repo, commit, path, sha256) once verified; until then the kind/cluster leak case is unsupported.
FAKE_JWKS_PIN: SourcePin | None = None
NO_PIN = ("no verified pin of the Istio source file holding the FakeJwks private key (meshjwt/kube/istio_source.py "
          "FAKE_JWKS_PIN): the leaked key cannot be read, so this case cannot sign with it")


def fetch(pin: SourcePin, timeout: float = 30.0) -> bytes:
    """The pinned file's bytes: from the cache, else downloaded once and checked against the pin's sha256.
    Offline: TargetCannot (one line); a body that is not the pinned one: EnvironmentProblem (nothing cached)."""
    cached = cache_dir() / "istio-source" / pin.sha256
    if cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == pin.sha256:
        return cached.read_bytes()
    try:
        with urllib.request.urlopen(pin.url, timeout=timeout) as answer:  # noqa: S310 - a pinned https URL
            body = answer.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TargetCannot(f"offline: cannot read Istio's FakeJwks key from {pin.url} ({reason})") from None
    digest = hashlib.sha256(body).hexdigest()
    if digest != pin.sha256:
        raise EnvironmentProblem(f"{pin.url} has sha256 {digest}, not the pinned {pin.sha256}: refusing it")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_bytes(body)
    partial.replace(cached)
    return body


def private_key_pem(source: bytes) -> str:
    """The one PEM private key in a source file (a Go string literal's ``\\n`` escapes undone)."""
    found = PEM.findall(source.decode(errors="replace"))
    if len(found) != 1:
        raise EnvironmentProblem(f"expected one PEM private key in the pinned Istio source, found {len(found)}")
    return found[0].replace("\\n", "\n")


def leaked_fake_jwks_key(pin: SourcePin | None = FAKE_JWKS_PIN, timeout: float = 30.0) -> object:
    """Istio's leaked FakeJwks signing key, as a :class:`meshjwt.keys.SigningKey` (RS256, no kid, so that it
    is tried as FakeJwks's key is); TargetCannot when there is no pin or the machine is offline."""
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    from meshjwt.keys import SigningKey

    if pin is None:
        raise TargetCannot(NO_PIN)
    private = serialization.load_pem_private_key(private_key_pem(fetch(pin, timeout)).encode(), password=None)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)  # type: ignore[arg-type]
    return SigningKey(alg="RS256", kid="", private=private, jwk=jwk)


def cached_path(pin: SourcePin) -> Path:
    """Where :func:`fetch` caches ``pin``'s file."""
    return cache_dir() / "istio-source" / pin.sha256
