"""The curl output parser: statuses, header blocks, bodies, connection failures."""

from __future__ import annotations

from meshjwt.kube.curl import MARKER, WRITE_OUT, CurlResult, parse


def run(
    out: str, code: str = "200", curl_exit: int = 0, stderr: str = "", rc: int | None = None
) -> CurlResult:
    return CurlResult(out + f"{MARKER}{code} {curl_exit}", stderr, curl_exit if rc is None else rc)


def test_write_out_format_is_shell_safe_and_matches_marker():
    assert WRITE_OUT == "\\n__MESHJWT_CURL__ %{http_code} %{exitcode}"
    assert MARKER == "\n__MESHJWT_CURL__ "


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
