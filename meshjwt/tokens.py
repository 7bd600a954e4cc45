"""Minting tokens with PyJWT: valid ones for any algorithm and claims, and the classic bad ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

from meshjwt.keys import KeySet, SigningKey, b64url, generate_key

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
        self._attacker: SigningKey | None = None  # the attacker's RSA key (jwk/jku/x5u attacks), made on first use
        self._rotated: SigningKey | None = None  # the issuer's next key (JWKS rotation), made on first use
        #: the key of the substitute key set istiod inlines on versions that leaked it (from the mesh, per run)
        self.fake_jwks_key: SigningKey | None = None

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

    # --- JWKS lifecycle kinds (07-jwks-lifecycle) ----------------------------------------------------
    @property
    def rotated(self) -> SigningKey:
        """The issuer's next RSA key: published only once a case rotates the served JWKS."""
        if self._rotated is None:
            self._rotated = generate_key("RS256", kid=f"rotated-{secrets.token_hex(4)}")
        return self._rotated

    def jwks_without_alg_json(self) -> str:
        """The run's asymmetric public keys with no ``alg`` or ``use`` member (as Google and Azure AD publish)."""
        keys = [{k: v for k, v in key.jwk.items() if k not in ("alg", "use")}
                for key in self.keys.keys.values() if key.jwk.get("kty") != "oct"]  # fmt: skip
        return json.dumps({"keys": keys}, separators=(",", ":"))

    def rotated_jwks_json(self) -> str:
        """The run's JWKS with :attr:`rotated` added (old keys still published, as in a graceful rotation)."""
        jwks = self.keys.jwks()
        return json.dumps({"keys": [*jwks["keys"], self.rotated.jwk]}, separators=(",", ":"))

    def rotated_key(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """Signed with the issuer's next key (:attr:`rotated`)."""
        header = self._header("RS256", self.rotated.kid, None)
        return self._forge(header, self.claims(claims), self._signer("RS256", self.rotated.private))

    def istio_fake_jwks(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None) -> str:
        """Signed with the private key of istiod's substitute key set (``FakeJwks``, leaked in Istio's source);
        the key comes from the mesh (:attr:`fake_jwks_key`)."""
        if self.fake_jwks_key is None:
            raise ValueError("no FakeJwks key: the target provides it (Mesh.fake_jwks_signing_key)")
        key = self.fake_jwks_key
        header = self._header("RS256", key.kid or None, None)
        return self._forge(header, self.claims(claims), self._signer("RS256", key.private))

    # --- attack kinds (jwt_tool's playbook and friends; see suites/scenarios/06-token-attacks.yaml) --------
    # Each takes ``jose``: members merged into (or, with value None, dropped from) the JOSE header.
    @property
    def attacker(self) -> SigningKey:
        """The attacker's own RSA key: never in the run's JWKS; its public half is what an attacker serves."""
        if self._attacker is None:
            self._attacker = generate_key("RS256", kid=f"attacker-{secrets.token_hex(4)}")
        return self._attacker

    def attacker_jwks_json(self) -> str:
        """The JWKS an attacker serves for ``jku`` tokens (public key of :attr:`attacker`)."""
        return json.dumps({"keys": [self.attacker.jwk]}, separators=(",", ":"))

    def attacker_x5u_pem(self) -> str:
        """The certificate chain an attacker serves for ``x5u`` tokens: a certificate for :attr:`attacker`'s
        public key, signed by the attacker's own CA, then that CA (PEM, RFC 7515 §4.1.5)."""
        from meshjwt.pki import certificate_chain

        return certificate_chain(self.attacker.private.public_key(), f"{self.attacker.kid}.attacker.meshjwt.test")

    def _header(self, alg: str, kid: str | None, jose: Mapping[str, Any] | None) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid is not None else {})}
        for name, value in (jose or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return header

    def _forge(self, header: Mapping[str, Any] | str, payload: Mapping[str, Any] | str,
               signer: Callable[[bytes], bytes] | None) -> str:  # fmt: skip
        """``header.payload.signature`` from JSON (or raw JSON text) and a signer of the signing input."""
        parts = [b64url((v if isinstance(v, str) else json.dumps(v)).encode()) for v in (header, payload)]
        signing_input = ".".join(parts).encode()
        return f"{parts[0]}.{parts[1]}.{b64url(signer(signing_input)) if signer else ''}"

    @staticmethod
    def _signer(alg: str, key: Any) -> Callable[[bytes], bytes]:
        algorithm = get_default_algorithms()[alg]
        if alg.startswith("HS"):
            return lambda data: hmac.new(key, data, algorithm.hash_alg).digest()  # type: ignore[attr-defined]
        return lambda data: algorithm.sign(data, key)

    def _run_key(self, alg: str, jose: Mapping[str, Any] | None, claims: Mapping[str, Any] | None) -> str:
        """A token correctly signed with the run's ``alg`` key, its header adjusted by ``jose``."""
        key = self.keys[alg]
        return self._forge(self._header(alg, key.kid, jose), self.claims(claims), self._signer(alg, key.private))

    def signed(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
               jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Correctly signed by the run's ``alg`` key with claims of any JSON type (PyJWT would refuse some)."""
        return self._run_key(alg, jose, claims)

    def unsigned(self, alg: str = "none", claims: Mapping[str, Any] | None = None,
                 jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """``alg`` (none, None, NONE, nOnE …) in the header and an empty signature (jwt_tool -X a)."""
        return self._forge(self._header(alg, None, jose), self.claims(claims), None)

    def unsigned_with_signature(self, alg: str = "none", claims: Mapping[str, Any] | None = None,
                                jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """``alg`` none-like in the header, the run's RS256 kid, and a real RS256 signature kept."""
        header = self._header(alg, self.keys["RS256"].kid, jose)
        return self._forge(header, self.claims(claims), self._signer("RS256", self.keys["RS256"].private))

    def null_signature(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                       jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """A valid token with its signature removed (``header.payload.``; jwt_tool -X n)."""
        header, payload, _ = self._run_key(alg, jose, claims).split(".")
        return f"{header}.{payload}."

    def truncated_signature(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                            jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """A valid token with the last 4 characters of its signature cut (jwt_tool's "broken signature")."""
        return self._run_key(alg, jose, claims)[:-4]

    def psychic_signature(self, alg: str = "ES256", claims: Mapping[str, Any] | None = None,
                          jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """ECDSA r = s = 0 under the run's ``alg`` key (CVE-2022-21449)."""
        size = {"ES256": 32, "ES384": 48, "ES512": 66}[alg]
        return self._forge(self._header(alg, self.keys[alg].kid, jose), self.claims(claims),
                           lambda _: bytes(2 * size))  # fmt: skip

    def embedded_jwk(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                     jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Signed by the attacker, whose public key rides in the ``jwk`` header, under the run's kid (CVE-2018-0114)."""
        header = self._header("RS256", self.keys["RS256"].kid, {"jwk": self.attacker.jwk, **(jose or {})})
        return self._forge(header, self.claims(claims), self._signer("RS256", self.attacker.private))

    def attacker_signed(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                        jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Signed by the attacker's key under its own kid; ``jose`` adds e.g. ``jku``/``x5u`` (jwt_tool -X s)."""
        header = self._header("RS256", self.attacker.kid, jose)
        return self._forge(header, self.claims(claims), self._signer("RS256", self.attacker.private))

    def _hs256(self, secret: bytes, claims: Mapping[str, Any] | None, jose: Mapping[str, Any] | None) -> str:
        header = self._header("HS256", self.keys["HS256"].kid if "HS256" in self.keys.keys else None, jose)
        return self._forge(header, self.claims(claims), self._signer("HS256", secret))

    def hs256_empty_secret(self, alg: str = "HS256", claims: Mapping[str, Any] | None = None,
                           jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """HS256 with an empty secret under the run's HS256 kid (jwt_tool -X b; kid injections sign with it)."""
        return self._hs256(b"", claims, jose)

    def hs256_guessable_secret(self, alg: str = "HS256", claims: Mapping[str, Any] | None = None,
                               jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """HS256 with the secret ``secret`` (first of jwt_tool's common secrets) under the run's HS256 kid."""
        return self._hs256(b"secret", claims, jose)

    def hs256_secret_one(self, alg: str = "HS256", claims: Mapping[str, Any] | None = None,
                         jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """HS256 with the secret ``1``, what jwt_tool signs its SQL-injection kid with."""
        return self._hs256(b"1", claims, jose)

    def _hs256_with_rsa_public(self, secret: bytes, claims: Mapping[str, Any] | None,
                               jose: Mapping[str, Any] | None) -> str:  # fmt: skip
        header = self._header("HS256", self.keys["RS256"].kid, jose)
        return self._forge(header, self.claims(claims), self._signer("HS256", secret))

    def hs256_with_rsa_public_key_der(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                                      jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Key confusion with the RSA public key as DER (SubjectPublicKeyInfo) for the HMAC secret."""
        der = self.keys["RS256"].private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return self._hs256_with_rsa_public(der, claims, jose)

    def hs256_with_rsa_public_key_jwk(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                                      jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Key confusion with the RSA public JWK (as published in the JWKS, compact JSON) for the HMAC secret."""
        jwk = json.dumps(self.keys["RS256"].jwk, separators=(",", ":")).encode()
        return self._hs256_with_rsa_public(jwk, claims, jose)

    def rs_ps_swap(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                   jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """The run's ``alg`` key (RSxxx or PSxxx) signing with the other padding, the header saying so."""
        swapped = ("PS" if alg.startswith("RS") else "RS") + alg[2:]
        key = self.keys[alg]
        return self._forge(self._header(swapped, key.kid, jose), self.claims(claims),
                           self._signer(swapped, key.private))  # fmt: skip

    def foreign_family_kid(self, alg: str = "ES256", claims: Mapping[str, Any] | None = None,
                           jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Correctly signed by the run's ``alg`` key, but under the kid of the run's RS256 key."""
        return self._run_key(alg, {"kid": self.keys["RS256"].kid, **(jose or {})}, claims)

    def duplicate_header_keys(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                              jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """A correctly signed token whose header JSON names ``alg`` twice: ``RS256`` first, ``none`` last."""
        header = json.dumps(self._header(alg, self.keys[alg].kid, jose))[:-1] + ', "alg": "none"}'
        return self._forge(header, self.claims(claims), self._signer(alg, self.keys[alg].private))

    def duplicate_payload_keys(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                               jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """A correctly signed token whose payload JSON names ``sub`` twice (the run's first, ``admin`` last)."""
        payload = json.dumps(self.claims(claims))[:-1] + ', "sub": "admin@secure.istio.io"}'
        return self._forge(self._header(alg, self.keys[alg].kid, jose), payload,
                           self._signer(alg, self.keys[alg].private))  # fmt: skip

    def oversized(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                  jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """A valid token of about 70 KB (a padding claim): beyond Envoy's 60 KiB request-header limit."""
        return self._run_key(alg, jose, {"pad": "x" * 52_000, **(claims or {})})

    def expired_within_skew(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                            jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """exp 20 s ago: inside Envoy's 60 s clock skew, so still accepted."""
        now = int(time.time())
        return self._run_key(alg, jose, {"iat": now - 600, "exp": now - 20, **(claims or {})})

    def not_yet_valid_within_skew(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                                  jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """nbf 20 s ahead: inside Envoy's 60 s clock skew, so already accepted."""
        return self._run_key(alg, jose, {"nbf": int(time.time()) + 20, **(claims or {})})

    def expired_beyond_skew(self, alg: str = "RS256", claims: Mapping[str, Any] | None = None,
                            jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """exp 75 s ago: just beyond Envoy's 60 s clock skew."""
        now = int(time.time())
        return self._run_key(alg, jose, {"iat": now - 600, "exp": now - 75, **(claims or {})})

    KINDS: dict[str, Callable[..., str]] = {}
    #: kinds whose JOSE header a scenario may adjust (``joseHeader``)
    JOSE_KINDS: frozenset[str] = frozenset()

    def mint(self, kind: str = "valid", alg: str = "RS256", claims: Mapping[str, Any] | None = None,
             jose: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Mint a token of ``kind`` (see ``TokenFactory.KINDS``); ``jose`` only for ``JOSE_KINDS``."""
        try:
            maker = self.KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown token kind {kind!r}; choose one of {', '.join(self.KINDS)}") from None
        if jose:
            if kind not in self.JOSE_KINDS:
                raise ValueError(f"token kind {kind!r} takes no joseHeader; these do: {', '.join(self.JOSE_KINDS)}")
            return maker(self, alg=alg, claims=claims, jose=jose)
        return maker(self, alg=alg, claims=claims)


TokenFactory.KINDS = {
    name.replace("_", "-"): getattr(TokenFactory, name)
    for name in (
        "valid", "expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "tampered_signature",
        "tampered_payload", "unknown_kid", "alg_none", "hs256_with_rsa_public_key", "malformed",
        "bad_base64_payload", "rotated_key", "istio_fake_jwks",
    )
}  # fmt: skip
_ATTACK_KINDS = (
    "signed", "unsigned", "unsigned_with_signature", "null_signature", "truncated_signature", "psychic_signature",
    "embedded_jwk", "attacker_signed", "hs256_empty_secret", "hs256_guessable_secret", "hs256_secret_one",
    "hs256_with_rsa_public_key_der", "hs256_with_rsa_public_key_jwk", "rs_ps_swap", "foreign_family_kid",
    "duplicate_header_keys", "duplicate_payload_keys", "oversized", "expired_within_skew",
    "not_yet_valid_within_skew", "expired_beyond_skew",
)  # fmt: skip
TokenFactory.KINDS.update({name.replace("_", "-"): getattr(TokenFactory, name) for name in _ATTACK_KINDS})
TokenFactory.JOSE_KINDS = frozenset(name.replace("_", "-") for name in _ATTACK_KINDS)


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
