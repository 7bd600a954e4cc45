"""Istio's golden data without ``../shared``: the pinned download into the cache, against a local HTTP server.

The server is real (``http.server`` on loopback, in a thread); only its content stands in for Istio's repository.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from istio_golden import unavailable

from rehearsal.istio import golden

RELATIVE = "authn/policy_applier_test.go"
SHARED = golden.sibling()


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    requests: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body if body is not None else b"not found")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/istio"


def _path(relative: str) -> str:
    return f"/istio/{golden.pins()['commit']}/{golden.pins()['files'][relative]['source']}"


def _pinned_body(relative: str) -> bytes:
    """The file the pin names: from ../shared when present, else a body made to match (the pin is then patched)."""
    return (SHARED / relative).read_bytes() if (SHARED / relative).is_file() else b"package authn\n"


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> bytes:
    body = _pinned_body(RELATIVE)
    if not (SHARED / RELATIVE).is_file():
        entry = {**golden.pins()["files"][RELATIVE], "sha256": hashlib.sha256(body).hexdigest()}
        monkeypatch.setitem(golden.pins()["files"], RELATIVE, entry)
    return body


@pytest.fixture
def cache_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $MESHJWT_ISTIO_GOLDEN, no ../shared: the cache at tmp_path/cache is where the data is looked for."""
    monkeypatch.delenv(golden.ENV_VAR, raising=False)
    monkeypatch.setenv(golden.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(golden, "sibling", lambda: tmp_path / "no-shared" / "istio-golden")
    monkeypatch.setattr(golden, "_failed", [])
    return tmp_path / "cache"


def test_the_pins_name_each_file_once_with_its_istio_path_and_sha256() -> None:
    pins = golden.pins()
    assert pins["repository"] == "istio/istio" and len(pins["commit"]) == 40
    assert {"authz/http/allow-full-rule-in.yaml", RELATIVE, "install/pilot_default.golden.yaml"} <= set(pins["files"])
    for entry in pins["files"].values():
        assert len(entry["sha256"]) == 64 and not entry["source"].startswith("/")


def test_the_pins_are_the_shared_files() -> None:
    if not SHARED.is_dir():
        unavailable(f"{SHARED} is absent: the pins cannot be compared with it")
    for relative, entry in golden.pins()["files"].items():
        assert hashlib.sha256((SHARED / relative).read_bytes()).hexdigest() == entry["sha256"], relative


def test_lookup_order_env_then_shared_then_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(golden, "sibling", lambda: tmp_path / "shared" / "istio-golden")
    env = {golden.ENV_VAR: str(tmp_path / "mine"), golden.CACHE_ENV: str(tmp_path / "cache")}
    assert golden.golden_root(env) == tmp_path / "mine"
    del env[golden.ENV_VAR]
    assert golden.golden_root(env) == tmp_path / "cache"
    (tmp_path / "shared" / "istio-golden").mkdir(parents=True)
    assert golden.golden_root(env) == tmp_path / "shared" / "istio-golden"
    assert golden.cache_dir({"HOME": "/h"}).parts[-3:] == ("meshjwt", "istio-golden", golden.pins()["commit"])


def test_a_good_file_is_downloaded_once_into_the_cache(
    server: _Server, cache_only: Path, pinned: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files[_path(RELATIVE)] = pinned
    monkeypatch.setenv(golden.URL_ENV, _url(server))
    assert golden.golden_file(RELATIVE).read_bytes() == pinned
    assert golden.golden_file(RELATIVE) == cache_only / RELATIVE
    assert server.requests == [_path(RELATIVE)]  # the second look-up reads the cache
    assert [p.name for p in (cache_only / "authn").iterdir()] == ["policy_applier_test.go"]  # no partial file left


def test_a_file_whose_sha256_differs_from_its_pin_is_refused_and_not_kept(
    server: _Server, cache_only: Path, pinned: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files[_path(RELATIVE)] = pinned + b"// tampered\n"
    monkeypatch.setenv(golden.URL_ENV, _url(server))
    with pytest.raises(golden.GoldenMissing, match="has sha256 .*, pinned") as caught:
        golden.golden_file(RELATIVE)
    assert "\n" not in str(caught.value) and golden.ENV_VAR in str(caught.value)
    assert not (cache_only / RELATIVE).exists()


def test_a_404_is_one_line_naming_the_url(server: _Server, cache_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(golden.URL_ENV, _url(server))
    with pytest.raises(golden.GoldenMissing, match="HTTP 404") as caught:
        golden.golden_file(RELATIVE)
    assert _path(RELATIVE) in str(caught.value) and "\n" not in str(caught.value)


def test_no_network_is_one_attempt_then_one_line(cache_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed: connection refused
    monkeypatch.setenv(golden.URL_ENV, f"http://127.0.0.1:{port}/istio")
    attempts: list[str] = []
    real = golden.download
    monkeypatch.setattr(golden, "download", lambda rel, target: attempts.append(rel) or real(rel, target))
    for _ in range(2):
        with pytest.raises(golden.GoldenMissing, match="cannot download Istio golden data") as caught:
            golden.golden_dir("authz/http")
        assert "\n" not in str(caught.value) and "shared/istio-golden" in str(caught.value)
    assert len(attempts) == 1  # offline: the rest of the files, and later look-ups, are not tried again


def test_an_unpinned_file_is_never_downloaded(cache_only: Path) -> None:
    with pytest.raises(golden.GoldenMissing, match="not in golden-pins.json"):
        golden.download("authz/http/unknown.yaml", cache_only / "x")


def test_pins_are_json_with_a_comment_saying_what_they_are() -> None:
    assert "sha256" in json.loads(golden.PINS_FILE.read_text())["_comment"]
