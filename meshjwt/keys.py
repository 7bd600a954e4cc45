"""Per-run signing keys for all 13 JWS algorithms, and the JWKS that publishes them."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALGORITHMS: tuple[str, ...] = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "HS256", "HS384", "HS512",
    "EdDSA",
)  # fmt: skip
RSA_ALGORITHMS = ALGORITHMS[:6]

_CURVES = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
_HS_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """One key: its algorithm, key id, the object PyJWT signs with, and its public JWK."""

    alg: str
    kid: str
    private: Any  # cryptography private key, or bytes for HS
    jwk: dict[str, Any]  # public JWK (for HS: the oct key, which is the secret itself)


def generate_key(alg: str, kid: str | None = None) -> SigningKey:
    """Generate a fresh key for ``alg`` (RSA 2048, EC on the matching curve, Ed25519, random HMAC secret)."""
    kid = kid or f"{alg.lower()}-{secrets.token_hex(4)}"
    if alg.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg.startswith("ES"):
        private = ec.generate_private_key(_CURVES[alg])
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg in _HS_BYTES:
        private = secrets.token_bytes(_HS_BYTES[alg])
        jwk = {"kty": "oct", "k": b64url(private)}
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return SigningKey(alg=alg, kid=kid, private=private, jwk=jwk)


class KeySet:
    """The run's keys, one per algorithm, and the JWKS of their public halves."""

    def __init__(self, algorithms: tuple[str, ...] = ALGORITHMS) -> None:
        self.keys: dict[str, SigningKey] = {alg: generate_key(alg) for alg in algorithms}

    def __getitem__(self, alg: str) -> SigningKey:
        return self.keys[alg]

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: every key with its kid and alg (``oct`` keys for HS)."""
        return {"keys": [key.jwk for key in self.keys.values()]}

    def jwks_json(self) -> str:
        """The JWKS as compact JSON (what servers serve and inline ``jwks:`` fields hold)."""
        return json.dumps(self.jwks(), separators=(",", ":"))
