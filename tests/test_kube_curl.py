"""The curl output parser: statuses, header blocks, bodies, connection failures."""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshjwt.kube.curl import MARKER, CurlResult, Transfer, batch_config, parse, parse_batch


def run(
    out: str, code: str = "200", curl_exit: int = 0, stderr: str = "", rc: int | None = None
) -> CurlResult:
    return CurlResult(out + f"{MARKER}{code} {curl_exit}", stderr, curl_exit if rc is None else rc)


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with its method, path and X-Token header (or 404 under /missing)."""

    def _answer(self) -> None:
        body = f"{self.command} {self.path} {self.headers.get('X-Token')} {self.headers.get('X-Empty')!r}".encode()
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_batch_config_runs_every_transfer_in_order_with_verbatim_paths(echo_url):
    transfers = [
        Transfer(f"{echo_url}/a/../b?x=1", headers={"X-Token": 'q"uo\\te', "X-Empty": ""}),
        Transfer(f"{echo_url}/missing", method="POST"),
        Transfer("http://127.0.0.1:1/refused"),
        Transfer(f"{echo_url}/last"),
    ]
    config = batch_config(transfers, timeout=5, nonce="n0nce")
    done = subprocess.run(["curl", "-sS", "-K", "-"], input=config, capture_output=True, text=True, timeout=30)
    answers = parse_batch(CurlResult(done.stdout, done.stderr, done.returncode), "n0nce", len(transfers))
    assert [a.status for a in answers] == [200, 404, 0, 200]
    assert answers[0].body == "GET /a/../b?x=1 q\"uo\\te ''"  # path as is, quotes and backslashes intact
    assert answers[1].body.startswith("POST /missing")
    assert "curl exit 7" in (answers[2].error or "")
    assert answers[3].body.startswith("GET /last") and "__MESHJWT_CURL__" not in answers[3].body


def test_batch_missing_transfer_is_no_response():
    answers = parse_batch(CurlResult("", "error: pod not found", 1), "n", 2)
    assert [a.status for a in answers] == [0, 0] and "pod not found" in (answers[1].error or "")


def test_status_headers_and_body():
    out = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\n\r\n{"ok": true}\n'
    response = parse(run(out))
    assert response.status == 200 and response.error is None
    assert response.headers == {"content-type": "application/json", "x-a": "1, 2"}
    assert response.body == '{"ok": true}\n'


def test_interim_100_continue_block_is_skipped():
    out = (
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\n\r\nJwt is missing"
    )
    response = parse(run(out, "401"))
    assert response.status == 401 and response.headers == {"www-authenticate": "Bearer"}
    assert response.body == "Jwt is missing"


def test_403_body_kept_verbatim_even_with_blank_lines():
    out = "HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\n\r\nRBAC: access denied\n\nmore"
    assert parse(run(out, "403")).body == "RBAC: access denied\n\nmore"


def test_000_with_nonzero_exit_is_connection_failure_not_status():
    response = parse(run("", "000", 7, "curl: (7) Failed to connect to httpbin.foo port 8000"))
    assert response.status == 0
    assert "curl exit 7" in response.error and "Failed to connect" in response.error


def test_timeout_is_connection_failure():
    response = parse(run("", "000", 28, "curl: (28) Operation timed out after 5000 milliseconds"))
    assert response.status == 0 and "28" in response.error


def test_missing_marker_means_no_result():
    response = parse(CurlResult("", "error: unable to upgrade connection: container not found", 1))
    assert response.status == 0 and "container not found" in response.error


def test_http_status_with_curl_error_keeps_status_and_notes_error():
    out = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"
    response = parse(run(out, "200", 18, "curl: (18) transfer closed"))
    assert response.status == 200 and "curl exit 18" in response.error


def test_head_output_without_body():
    response = parse(run("HTTP/1.1 200 OK\r\nserver: istio-envoy\r\n\r\n"))
    assert response.status == 200 and response.headers["server"] == "istio-envoy" and response.body == ""
