"""Keys and tokens: every algorithm signs and verifies, every bad token is bad in the intended way."""

import json

import jwt
import pytest

from meshjwt.keys import ALGORITHMS, KeySet, b64url
from meshjwt.tokens import TokenFactory, mask

PRIVATE_JWK_FIELDS = {"d", "p", "q", "dp", "dq", "qi"}


@pytest.fixture(scope="module")
def tokens() -> TokenFactory:
    return TokenFactory(KeySet())


def _verify(tokens: TokenFactory, token: str, **options):
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in tokens.keys.jwks()["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk, algorithm=header["alg"])
    return jwt.decode(token, key, algorithms=[header["alg"]], options={"verify_aud": False, **options})


def test_jwks_publishes_13_public_keys_with_kid_and_alg(tokens):
    keys = tokens.keys.jwks()["keys"]
    assert [k["alg"] for k in keys] == list(ALGORITHMS)
    assert len({k["kid"] for k in keys}) == 13
    for key in keys:
        if key["alg"].startswith("HS"):
            assert key["kty"] == "oct" and set(key) >= {"k"}
        else:
            assert not PRIVATE_JWK_FIELDS & set(key), f"{key['alg']} JWK leaks private parts"
    assert {k["crv"] for k in keys if k["kty"] == "EC"} == {"P-256", "P-384", "P-521"}
    assert next(k for k in keys if k["alg"] == "EdDSA")["crv"] == "Ed25519"


def test_keys_are_fresh_per_run():
    assert KeySet(("ES256",)).jwks() != KeySet(("ES256",)).jwks()


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_valid_token_verifies_for_every_algorithm(tokens, alg):
    claims = _verify(tokens, tokens.valid(alg, {"foo": "bar"}))
    assert claims["iss"] == tokens.issuer and claims["foo"] == "bar" and claims["exp"] > claims["iat"]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("expired", jwt.ExpiredSignatureError),
        ("not-yet-valid", jwt.ImmatureSignatureError),
        ("tampered-signature", jwt.InvalidSignatureError),
        ("tampered-payload", jwt.InvalidSignatureError),
    ],
)
def test_negative_tokens_fail_as_intended(tokens, kind, error):
    with pytest.raises(error):
        _verify(tokens, tokens.mint(kind))


def test_structural_negative_tokens(tokens):
    assert tokens.mint("malformed").count(".") == 0
    header, payload, signature = tokens.mint("alg-none").split(".")
    assert signature == "" and json.loads(jwt.utils.base64url_decode(header))["alg"] == "none"
    assert "%" in tokens.mint("bad-base64-payload").split(".")[1]
    assert jwt.get_unverified_header(tokens.mint("unknown-kid"))["kid"] not in {
        k["kid"] for k in tokens.keys.jwks()["keys"]
    }
    assert jwt.decode(tokens.mint("wrong-issuer"), options={"verify_signature": False})["iss"] != tokens.issuer
    assert jwt.decode(tokens.mint("wrong-audience"), options={"verify_signature": False})["aud"]


def test_hs256_with_rsa_public_key_is_the_key_confusion_token(tokens):
    token = tokens.mint("hs256-with-rsa-public-key")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": tokens.keys["RS256"].kid}
    with pytest.raises(jwt.PyJWTError):  # a correct verifier refuses it
        _verify(tokens, token)


def test_claims_override_and_drop(tokens):
    claims = tokens.claims({"sub": None, "aud": ["a", "b"]})
    assert "sub" not in claims and claims["aud"] == ["a", "b"]


def test_unknown_kind_is_a_clear_error(tokens):
    with pytest.raises(ValueError, match="unknown token kind 'nope'"):
        tokens.mint("nope")


def test_mask_never_shows_the_token():
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz"
    assert token not in mask(token) and len(mask(token)) < 15
    assert mask("short") == "***"
    assert b64url(b"\xff\xfe") == "__4"
