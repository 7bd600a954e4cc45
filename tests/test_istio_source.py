"""Issue 17: on kind/cluster the leaked FakeJwks key is read from Istio's source at run time (pinned, sha256-checked,
cached, never shipped); offline it is unsupported with one line. The download is tested against a local server."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from meshjwt.errors import EnvironmentProblem, TargetCannot
from meshjwt.kube import istio_source
from meshjwt.kube.istio_source import SourcePin


def go_source(key: rsa.RSAPrivateKey) -> bytes:
    """A Go file holding the key as jwks_resolver.go held FakeJwks: a raw string constant of a private JWKS."""
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    jwks = json.dumps({"keys": [jwk]}, indent=2)
    return f"package model\n\n// nolint: lll\nconst FakeJwks = `{jwks}`\n\nfunc other() {{}}\n".encode()


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path / "cache"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = go_source(key)
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pin = SourcePin("istio/istio", "0" * 40, "pilot/pkg/model/fake.go", hashlib.sha256(body).hexdigest(),
                    base_url=f"http://127.0.0.1:{server.server_address[1]}")  # fmt: skip
    yield pin, key, hits, server
    server.shutdown()


def test_the_key_is_downloaded_once_checked_and_cached(served) -> None:
    pin, key, hits, server = served
    signing = istio_source.leaked_fake_jwks_key(pin, timeout=5)
    assert signing.private.public_key().public_numbers() == key.public_key().public_numbers()
    assert hits == ["/istio/istio/" + "0" * 40 + "/pilot/pkg/model/fake.go"]
    assert istio_source.cached_path(pin).is_file()
    server.shutdown()  # offline from now on: the cache answers
    assert istio_source.leaked_fake_jwks_key(pin, timeout=1).kid == "" and len(hits) == 1


def test_a_body_that_is_not_the_pinned_one_is_refused_and_not_cached(served) -> None:
    pin, _, _, _ = served
    wrong = SourcePin(pin.repo, pin.commit, pin.path, "f" * 64, base_url=pin.base_url)
    with pytest.raises(EnvironmentProblem, match="not the pinned"):
        istio_source.leaked_fake_jwks_key(wrong, timeout=5)
    assert not istio_source.cached_path(wrong).exists()


def test_offline_is_unsupported_in_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path))
    pin = SourcePin("istio/istio", "0" * 40, "x.go", "a" * 64, base_url="http://127.0.0.1:9")
    with pytest.raises(TargetCannot, match=r"^offline: cannot read Istio's FakeJwks key from http://127\.0\.0\.1:9/"):
        istio_source.leaked_fake_jwks_key(pin, timeout=2)
    with pytest.raises(TargetCannot, match="no verified pin"):
        istio_source.leaked_fake_jwks_key(None)


def test_the_pin_names_the_last_istio_source_that_held_fake_jwks() -> None:
    pin = istio_source.FAKE_JWKS_PIN
    assert pin is not None and pin.path == "pilot/pkg/model/jwks_resolver.go" and len(pin.sha256) == 64
    assert pin.url.startswith("https://raw.githubusercontent.com/istio/istio/41e6f106681fe63b064d8a755f86b696f71c7fbd/")


def test_a_source_without_const_fake_jwks_is_one_line() -> None:
    with pytest.raises(EnvironmentProblem, match="expected one private RSA key in const FakeJwks"):
        istio_source.private_jwk(b"package model\n")
