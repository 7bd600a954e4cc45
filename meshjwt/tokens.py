"""Minting tokens with PyJWT: valid ones for any algorithm and claims, and the classic bad ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from meshjwt.keys import KeySet, b64url, generate_key

DEFAULT_ISSUER = "testing@secure.istio.io"
DEFAULT_SUBJECT = "testing@secure.istio.io"


class TokenFactory:
    """Mints tokens signed with the run's keys for one issuer.

    ``mint(kind, alg, claims)`` covers every token a scenario can ask for; ``KINDS`` lists the kinds.
    """

    def __init__(self, keys: KeySet, issuer: str = DEFAULT_ISSUER, lifetime: int = 3600) -> None:
        self.keys = keys
        self.issuer = issuer
        self.lifetime = lifetime
        self._stray_key = None  # a key not in the JWKS, made on first use

    def claims(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Default claims (iss, sub, iat, exp) overlaid with ``extra``; a ``None`` value drops a claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": DEFAULT_SUBJECT,
            "iat": now,
            "exp": now + self.lifetime,
        }
        for name, value in (extra or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def sign(self, claims: Mapping[str, Any], alg: str = "RS256", headers: Mapping[str, Any] | None = None) -> str:
        """Sign ``claims`` with the run's ``alg`` key, ``kid`` in the header."""
        key = self.keys[alg]
        return jwt.encode(dict(claims), key.private, algorithm=alg, headers={"kid": key.kid, **(headers or {})})

    # --- token kinds -------------------------------------------------------------------------
    def valid(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        return self.sign(self.claims(claims), alg)

    def expired(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """exp two minutes ago: beyond Envoy's 60 s clock skew."""
        now = int(time.time())
        return self.sign(self.claims({"iat": now - 600, "exp": now - 120, **(claims or {})}), alg)

    def not_yet_valid(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """nbf five minutes ahead."""
        return self.sign(self.claims({"nbf": int(time.time()) + 300, **(claims or {})}), alg)

    def wrong_issuer(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        return self.sign(self.claims({"iss": "someone-else@example.com", **(claims or {})}), alg)

    def wrong_audience(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        return self.sign(self.claims({"aud": "not-the-audience.example.com", **(claims or {})}), alg)

    def tampered_signature(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """A valid token whose signature bytes were altered (first byte flipped)."""
        header, payload, signature = self.valid(alg, claims).split(".")
        raw = bytearray(_b64decode(signature))
        raw[0] ^= 0xFF
        return f"{header}.{payload}.{b64url(bytes(raw))}"

    def tampered_payload(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """A valid token whose payload was rewritten (sub changed) after signing."""
        header, _, signature = self.valid(alg, claims).split(".")
        forged = json.dumps(self.claims({"sub": "admin@secure.istio.io", **(claims or {})})).encode()
        return f"{header}.{b64url(forged)}.{signature}"

    def unknown_kid(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """Signed by a key that the JWKS does not have, under a kid it does not list."""
        if self._stray_key is None or self._stray_key.alg != alg:
            self._stray_key = generate_key(alg, kid="kid-not-in-jwks")
        key = self._stray_key
        return jwt.encode(self.claims(claims), key.private, algorithm=alg, headers={"kid": key.kid})

    def alg_none(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """``alg: none`` with an empty signature (``header.payload.``)."""
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64url(json.dumps(self.claims(claims)).encode())}."

    def hs256_with_rsa_public_key(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """The key-confusion attack: HS256 whose HMAC secret is the RSA key's public PEM, under its kid."""
        rsa_key = self.keys["RS256"]
        pem = rsa_key.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}).encode())
        payload = b64url(json.dumps(self.claims(claims)).encode())
        mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(mac)}"

    def malformed(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """Not a JWT at all: no dots."""
        return "this-is-not-a-jwt"

    def bad_base64_payload(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """Three parts, but the payload is not base64url."""
        header, _, signature = self.valid(alg, claims).split(".")
        return f"{header}.%%%not-base64%%%.{signature}"

    KINDS: dict[str, Callable[..., str]] = {}

    def mint(self, kind: str = "valid", alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """Mint a token of ``kind`` (see ``TokenFactory.KINDS``)."""
        try:
            maker = self.KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown token kind {kind!r}; choose one of {', '.join(self.KINDS)}") from None
        return maker(self, alg=alg, claims=claims)


TokenFactory.KINDS = {
    name.replace("_", "-"): getattr(TokenFactory, name)
    for name in (
        "valid", "expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "tampered_signature",
        "tampered_payload", "unknown_kid", "alg_none", "hs256_with_rsa_public_key", "malformed",
        "bad_base64_payload",
    )
}  # fmt: skip


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mask(token: str) -> str:
    """A token as it may appear in output: first 6 and last 4 characters only."""
    if len(token) <= 12:
        return "***"
    return f"{token[:6]}…{token[-4:]}"


# a JWT (or something shaped like one), a Bearer credential, a JWK's secret members, long base64url runs
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")  # also a truncated one
_BEARER = re.compile(r"(Bearer\s+)([^\s'\",}\]]{13,})", re.IGNORECASE)
# JWK members, also inside JSON embedded in a JSON string (escaped quotes), as an inline jwks is
_JWK_SECRET = re.compile(
    r"""(\\*["']?\b(?:k|d|p|q|dp|dq|qi|n|x|y)\\*["']?\s*:\s*\\*["'])([A-Za-z0-9_-]{13,})(\\*["'])"""
)
_LONG_B64 = re.compile(r"(?<![A-Za-z0-9_/+-])[A-Za-z0-9_-]{64,}(?![A-Za-z0-9_/+-])")


def scrub(text: str) -> str:
    """``text`` with every token-like or key-like string masked (first 6 and last 4 characters kept)."""
    text = _JWT.sub(lambda m: mask(m.group(0)), text)
    text = _BEARER.sub(lambda m: m.group(1) + mask(m.group(2)), text)
    text = _JWK_SECRET.sub(lambda m: m.group(1) + mask(m.group(2)) + m.group(3), text)
    return _LONG_B64.sub(lambda m: mask(m.group(0)), text)
