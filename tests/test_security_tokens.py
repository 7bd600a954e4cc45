"""Attack token kinds: each token carries exactly the flaw its name says (checked with PyJWT/cryptography)."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from meshjwt.keys import KeySet
from meshjwt.tokens import TokenFactory


@pytest.fixture(scope="module")
def tokens() -> TokenFactory:
    return TokenFactory(KeySet(("RS256", "PS256", "ES256", "ES384", "ES512", "HS256", "EdDSA")))


def _parts(token: str) -> tuple[dict, dict, bytes]:
    header, payload, signature = token.split(".")
    return (json.loads(_b64(header)), json.loads(_b64(payload)), _b64(signature))


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hs_ok(token: str, secret: bytes) -> bool:
    signing_input, _, signature = token.rpartition(".")
    return hmac.compare_digest(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest(), _b64(signature))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_variants(tokens, alg):
    header, payload, signature = _parts(tokens.mint("unsigned", alg))
    assert header["alg"] == alg and signature == b"" and payload["iss"] == tokens.issuer
    header, _, signature = _parts(tokens.mint("unsigned-with-signature", alg))
    assert header["alg"] == alg and len(signature) == 256


def test_null_and_truncated_signatures(tokens):
    assert tokens.mint("null-signature").endswith(".")
    token = tokens.mint("truncated-signature")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token + "AAAA"[: (4 - len(token.split(".")[2]) % 4) % 4], tokens.keys["RS256"].private.public_key(),
                   algorithms=["RS256"])  # fmt: skip


@pytest.mark.parametrize(("alg", "size"), [("ES256", 64), ("ES384", 96), ("ES512", 132)])
def test_psychic_signature_is_all_zero(tokens, alg, size):
    header, _, signature = _parts(tokens.mint("psychic-signature", alg))
    assert header == {"alg": alg, "typ": "JWT", "kid": tokens.keys[alg].kid}
    assert signature == bytes(size)


def test_embedded_jwk_is_the_attackers_key_under_the_runs_kid(tokens):
    token = tokens.mint("embedded-jwk")
    header, _, _ = _parts(token)
    assert header["kid"] == tokens.keys["RS256"].kid and header["jwk"] == tokens.attacker.jwk
    assert "d" not in header["jwk"]
    jwt.decode(token, tokens.attacker.private.public_key(), algorithms=["RS256"])  # the attacker's signature
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, tokens.keys["RS256"].private.public_key(), algorithms=["RS256"])


def test_attacker_signed_with_jku_verifies_against_the_served_jwks(tokens):
    token = tokens.mint("attacker-signed", jose={"jku": "http://attacker.example/jwks.json"})
    header, _, _ = _parts(token)
    assert header["jku"] == "http://attacker.example/jwks.json" and header["kid"] == tokens.attacker.kid
    served = json.loads(tokens.attacker_jwks_json())
    assert [k["kid"] for k in served["keys"]] == [tokens.attacker.kid] and "d" not in served["keys"][0]
    jwt.decode(token, jwt.PyJWK(served["keys"][0]).key, algorithms=["RS256"])


def test_hmac_secrets_and_kid_injection(tokens):
    assert _hs_ok(tokens.mint("hs256-empty-secret"), b"")
    assert _hs_ok(tokens.mint("hs256-guessable-secret"), b"secret")
    token = tokens.mint("hs256-secret-one", jose={"kid": "x' UNION SELECT '1';--"})
    assert _hs_ok(token, b"1") and _parts(token)[0]["kid"] == "x' UNION SELECT '1';--"
    assert "kid" not in _parts(tokens.mint("hs256-empty-secret", jose={"kid": None}))[0]


def test_key_confusion_with_der_and_jwk(tokens):
    public = tokens.keys["RS256"].private.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _hs_ok(tokens.mint("hs256-with-rsa-public-key-der"), der)
    jwk = json.dumps(tokens.keys["RS256"].jwk, separators=(",", ":")).encode()
    assert _hs_ok(tokens.mint("hs256-with-rsa-public-key-jwk"), jwk)


def test_rs_ps_swap_and_foreign_family_kid(tokens):
    token = tokens.mint("rs-ps-swap", "RS256")
    assert _parts(token)[0]["alg"] == "PS256" and _parts(token)[0]["kid"] == tokens.keys["RS256"].kid
    jwt.decode(token, tokens.keys["RS256"].private.public_key(), algorithms=["PS256"])
    token = tokens.mint("foreign-family-kid", "ES256")
    assert _parts(token)[0] == {"alg": "ES256", "typ": "JWT", "kid": tokens.keys["RS256"].kid}
    jwt.decode(token, tokens.keys["ES256"].private.public_key(), algorithms=["ES256"])


def test_duplicate_keys_and_claim_types(tokens):
    header = _b64(tokens.mint("duplicate-header-keys").split(".")[0]).decode()
    assert header.count('"alg"') == 2 and header.endswith('"alg": "none"}')
    payload = _b64(tokens.mint("duplicate-payload-keys").split(".")[1]).decode()
    assert payload.count('"sub"') == 2
    _, payload, _ = _parts(tokens.mint("signed", claims={"iss": ["x"], "exp": "1"}))
    assert payload["iss"] == ["x"] and payload["exp"] == "1"


def test_oversized_and_skew(tokens):
    assert 65_536 < len(tokens.mint("oversized")) < 80_000
    now = int(time.time())
    assert -25 <= _parts(tokens.mint("expired-within-skew"))[1]["exp"] - now <= -15
    assert -80 <= _parts(tokens.mint("expired-beyond-skew"))[1]["exp"] - now <= -70
    assert 15 <= _parts(tokens.mint("not-yet-valid-within-skew"))[1]["nbf"] - now <= 25


def test_jose_header_only_for_attack_kinds(tokens):
    with pytest.raises(ValueError, match="takes no joseHeader"):
        tokens.mint("valid", jose={"kid": "x"})
    assert set(tokens.KINDS) >= tokens.JOSE_KINDS


def test_the_jwks_without_alg_holds_only_asymmetric_keys_and_no_alg_or_use() -> None:
    """Issue 17: every JWK the run published carried alg, so key confusion never reached the signature check."""
    keys = KeySet(("RS256", "PS256", "ES256", "EdDSA", "HS256"))
    published = json.loads(TokenFactory(keys).jwks_without_alg_json())["keys"]
    assert {k["kty"] for k in published} == {"RSA", "EC", "OKP"}
    assert all("alg" not in k and "use" not in k and "kid" in k for k in published)
    assert all("alg" in k for k in keys.jwks()["keys"])  # the ordinary JWKS keeps them
