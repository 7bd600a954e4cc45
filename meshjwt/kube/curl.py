"""Parse what ``curl -sS -D - -o - -w WRITE_OUT`` printed: header blocks, body, status and exit code."""

from __future__ import annotations

from dataclasses import dataclass

from meshjwt.targets.base import Response

MARKER = "\n__MESHJWT_CURL__ "
#: appended by curl after the body: HTTP status and curl's own exit code.
WRITE_OUT = MARKER.replace("\n", "\\n") + "%{http_code} %{exitcode}"


@dataclass(frozen=True)
class CurlResult:
    """The raw outcome of one curl run (in a pod, through kubectl exec)."""

    stdout: str
    stderr: str
    returncode: int  # of kubectl exec / curl


def _parse_headers(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\n")[1:]:
        name, sep, value = line.rstrip("\r").partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def parse(result: CurlResult) -> Response:
    """Turn curl's output into a Response; ``000`` or a failed exit is a connection failure (status 0)."""
    out = result.stdout
    head, sep, tail = out.rpartition(MARKER)
    error_line = " ".join(result.stderr.split())[:300]
    if not sep:
        return Response(0, error=f"no curl result (exit {result.returncode}): {error_line or out[:200]!r}")
    fields = tail.split()
    code = fields[0] if fields else "000"
    curl_exit = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else result.returncode
    if code == "000" or not code.isdigit():
        return Response(0, error=f"connection failed (curl exit {curl_exit}): {error_line}")
    # Header blocks (1xx interim answers first) each end with an empty line; the body follows the last.
    headers: dict[str, str] = {}
    rest = head
    while rest.startswith("HTTP/"):
        end, size = rest.find("\r\n\r\n"), 4
        if end < 0:
            end, size = rest.find("\n\n"), 2
        if end < 0:
            headers, rest = _parse_headers(rest), ""
            break
        headers, rest = _parse_headers(rest[:end]), rest[end + size :]
    error = None if curl_exit == 0 else f"curl exit {curl_exit}: {error_line}"
    return Response(int(code), headers=headers, body=rest, error=error)
