"""curl in a pod: a batch of requests as a curl config (``curl -K -``), and its output parsed back:
header blocks, body, status and exit code of each transfer."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from meshjwt.mesh import Response

#: what curl writes after each body: this marker, the HTTP status and curl's own exit code.
MARKER = "\n__MESHJWT_CURL__ "


@dataclass(frozen=True)
class CurlResult:
    """The raw outcome of one curl run (in a pod, through kubectl exec)."""

    stdout: str
    stderr: str
    returncode: int  # of kubectl exec / curl


@dataclass(frozen=True)
class Transfer:
    """One request for curl: URL (path sent verbatim), method and headers."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    extra_headers: Sequence[tuple[str, str]] = ()  # more header lines after ``headers`` (a name may repeat)


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


def _quote(value: str) -> str:
    """A curl config-file string: double-quoted, with backslash escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def batch_config(transfers: Sequence[Transfer], *, timeout: float, nonce: str) -> str:
    """A curl config (read with ``curl -K -``) doing ``transfers`` one after another, each writing headers,
    body and a numbered marker line with its status and exit code. Tokens travel on stdin, never in the
    exec URL or a process list."""
    blocks = []
    for index, transfer in enumerate(transfers):
        lines = ["path-as-is", "dump-header = \"-\"", "output = \"-\"", f"max-time = {timeout:g}",
                 f"write-out = {_quote(batch_marker(nonce, index) + '%{http_code} %{exitcode}' + chr(10))}"]
        method = transfer.method.upper()
        if method == "HEAD":
            lines.append("head")
        elif method != "GET":
            lines.append(f"request = {_quote(method)}")
        for name, value in [*transfer.headers.items(), *transfer.extra_headers]:
            lines.append(f"header = {_quote(f'{name}: {value}' if value != '' else f'{name};')}")
        lines.append(f"url = {_quote(transfer.url)}")
        blocks.append("\n".join(lines))
    return "\nnext\n".join(blocks) + "\n"


def batch_marker(nonce: str, index: int) -> str:
    return f"\n__MESHJWT_CURL__ {nonce} {index} "


def parse_batch(result: CurlResult, nonce: str, count: int) -> list[Response]:
    """Split the output of a :func:`batch_config` run into ``count`` Responses (missing ones: status 0)."""
    pattern = re.compile("\n__MESHJWT_CURL__ " + re.escape(nonce) + r" (\d+) (\S+) (\S+)\n?")
    answers: dict[int, Response] = {}
    start = 0
    for match in pattern.finditer(result.stdout):
        chunk = result.stdout[start : match.start()]
        start = match.end()
        single = CurlResult(f"{chunk}{MARKER}{match.group(2)} {match.group(3)}", result.stderr, result.returncode)
        answers[int(match.group(1))] = parse(single)
    error = " ".join(result.stderr.split())[:300] or f"exit {result.returncode}"
    return [answers.get(i, Response(0, error=f"no curl result for request {i + 1} of {count}: {error}"))
            for i in range(count)]  # fmt: skip
