"""``pods/exec`` over WebSocket: the channel protocol (v5.channel.k8s.io, v4.channel.k8s.io)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from meshjwt.tokens import scrub

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
CHUNK = 32 * 1024
#: v4 has no "stdin closed" signal: stdin ends when the client has been quiet this long.
V4_STDIN_IDLE = 0.5


@dataclass
class ExecRequest:
    """One ``kubectl exec``: the pod (as stored), container, command and all of stdin (None without -i)."""

    namespace: str
    pod: dict[str, Any]
    container: str
    command: list[str]
    stdin: bytes | None


@dataclass
class ExecResult:
    """What the command printed and how it ended."""

    stdout: bytes
    stderr: bytes = b""
    exit_code: int = 0


ExecHandler = Callable[[ExecRequest], ExecResult]


def status_frame(request: ExecRequest, exit_code: int) -> bytes:
    """The final channel-3 ``Status``, as the kubelet words it."""
    if exit_code == 0:
        status: dict[str, Any] = {"metadata": {}, "status": "Success"}
    else:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": scrub(f"command terminated with non-zero exit code: error executing command"
                             f" {request.command}: exit status {exit_code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
        }
    return bytes([STATUS]) + json.dumps(status).encode()


async def _read_stdin(ws: web.WebSocketResponse, protocol: str) -> bytes:
    data = bytearray()
    idle = V4_STDIN_IDLE if protocol.startswith("v4") else None
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), idle) if idle else await ws.receive()
        except asyncio.TimeoutError:
            return bytes(data)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return bytes(data)
        payload = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
        if not payload:
            continue
        if payload[0] == CLOSE and payload[1:2] == bytes([STDIN]):
            return bytes(data)
        if payload[0] == STDIN:
            data += payload[1:]


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read and drop what the client still sends (resize, late stdin) until it closes."""
    async for _msg in ws:
        pass


async def serve(
    http: web.Request, request: ExecRequest, wants_stdin: bool, handler: ExecHandler | None, executor: Executor
) -> web.WebSocketResponse:
    """Upgrade, collect stdin, run ``handler`` in ``executor``, send stdout/stderr/status, close."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
    await ws.prepare(http)
    protocol = ws.ws_protocol or PROTOCOLS[1]
    if wants_stdin:
        request.stdin = await _read_stdin(ws, protocol)
    drain = asyncio.ensure_future(_drain(ws))
    completed = False  # once the status is sent, the client may hang up at will (and the handler be cancelled)
    try:
        if handler is None:
            result = ExecResult(b"", b"exec: this rehearsal server has no exec_handler\n", 126)
        else:
            result = await asyncio.get_running_loop().run_in_executor(executor, handler, request)
        for channel, data in ((STDOUT, result.stdout), (STDERR, result.stderr)):
            for start in range(0, len(data), CHUNK):
                await ws.send_bytes(bytes([channel]) + data[start:start + CHUNK])
        await ws.send_bytes(status_frame(request, result.exit_code))
        completed = True
        await ws.close()
    except ConnectionError:
        pass
    except asyncio.CancelledError:
        if not completed:
            raise
    finally:
        drain.cancel()
        try:
            await asyncio.gather(drain, return_exceptions=True)
        except asyncio.CancelledError:
            if not completed:
                raise
    return ws
