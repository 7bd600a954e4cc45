"""The mesh's workloads as one real process: httpbin under waitress, a Bookinfo stand-in, JWKS servers.

Run as ``python -m meshjwt.localmesh.workloads SPEC.json``. It binds every server on 127.0.0.1 with a
kernel-chosen port, then prints one JSON line ``{"ports": {name: port}}`` on stdout and serves until
terminated. JWKS files are read on every request, so the run can rotate keys without a restart; a server's
optional control file (read per request too) makes it misbehave: ``{"down": true}`` (the connection is closed
unanswered), ``{"delay": seconds}``, ``{"body": text}`` (served with 200 instead of the keys),
``{"status": 503}`` (that status, with ``body`` if given), ``{"redirect": true}`` (302 to the same path with
``redirected=1`` added to the query).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PRODUCT = re.compile(r"^/api/v1/products/[^/]+(/(reviews|ratings))?$")
_BOOKINFO_200 = ("/productpage", "/login", "/logout", "/api/v1/products")


def bookinfo_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """Stand-in for Bookinfo's productpage: the pages and APIs the gateway routes to answer 200."""
    path = environ.get("PATH_INFO", "")
    if path in _BOOKINFO_200 or path.startswith("/static/") or _PRODUCT.match(path):
        body = json.dumps({"service": "productpage", "path": path}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


def _control(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _jwks_handler(routes: dict[str, Path], control: Path | None = None,
                  counted: frozenset[str] = frozenset()) -> type[BaseHTTPRequestHandler]:  # fmt: skip
    class JwksHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, _, query = self.path.partition("?")
            source = routes.get(path)
            if source is None:
                self._send(404, b"not found", "text/plain")
                return
            if path in counted:  # the attacker's server: every request it got is evidence (<file>.hits)
                with source.with_name(source.name + ".hits").open("a") as hits:
                    hits.write(f"{self.client_address[0]} {self.path}\n")
            how = _control(control)
            if how.get("down"):
                self.close_connection = True  # nothing answered: the client sees the connection closed
                return
            if how.get("delay"):
                time.sleep(float(how["delay"]))  # the slow server under test, not a wait of the suite
            if how.get("redirect") and "redirected=1" not in query:
                location = f"{path}?{query + '&' if query else ''}redirected=1"
                self._send(302, b"moved", "text/plain", {"Location": location})
            elif how.get("body") is not None or how.get("status"):
                self._send(int(how.get("status") or 200), str(how.get("body") or "").encode(), "text/html")
            else:
                kind = "application/x-pem-file" if source.suffix == ".pem" else "application/json"
                self._send(200, source.read_bytes(), kind)

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return JwksHandler


def _reloading_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context that takes the certificate files as they are at each handshake, like the JWKS files
    at every request: a run may write them after the server started, or rotate them. Once loaded, the key
    may be removed from disk (the local target does): the last loaded pair stays in use."""
    loaded: dict[str, Any] = {"stamp": None, "context": None}

    def current() -> ssl.SSLContext | None:
        with contextlib.suppress(OSError):
            stamp = (os.stat(cert).st_mtime_ns, os.stat(key).st_mtime_ns)
            if stamp != loaded["stamp"]:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(cert, key)
                loaded.update(stamp=stamp, context=context)
        return loaded["context"]

    def on_hello(sock: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
        context = current()
        if context is not None:  # none yet: the handshake fails, as a server without a certificate would
            sock.context = context

    current()
    base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    base.sni_callback = on_hello
    return base


def _serve_jwks(routes: dict[str, Path], tls: dict[str, str] | None, control: Path | None = None,
                counted: frozenset[str] = frozenset()) -> ThreadingHTTPServer:  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _jwks_handler(routes, control, counted))
    server.daemon_threads = True
    if tls:
        server.socket = _reloading_context(tls["cert"], tls["key"]).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _serve_wsgi(app: Callable) -> Any:
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4, ident="meshjwt")
    threading.Thread(target=server.run, daemon=True).start()
    return server


def spawn(spec: dict[str, Any], workdir: Path) -> subprocess.Popen:
    """Start the servers of ``spec`` (written to ``workdir/workloads.json``) as a child of this process; read
    their ports with :func:`await_ports` (start other things in between)."""
    from meshjwt.localmesh import processes

    (workdir / "workloads.json").write_text(json.dumps(spec))
    return processes.spawn([sys.executable, "-m", "meshjwt.localmesh.workloads", str(workdir / "workloads.json")],
                           log=workdir / "workloads.log", stdout=subprocess.PIPE)  # fmt: skip


def await_ports(proc: subprocess.Popen, workdir: Path, timeout: float) -> dict[str, int]:
    """The servers' ports, once they listen; EnvironmentProblem (timeout 'start') with their last log line."""
    from meshjwt.errors import EnvironmentProblem

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        log = (workdir / "workloads.log").read_text(errors="replace").strip().splitlines()
        raise EnvironmentProblem(f"local workloads did not start within {timeout:g}s (timeout 'start'): "
                                 f"{log[-1] if log else 'no output'}")  # fmt: skip
    return json.loads(line)["ports"]


def main(spec_path: str) -> None:
    """Start the servers described in the spec file and report their ports on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ports: dict[str, int] = {}
    for name, server in spec["jwks_servers"].items():
        routes = {path: Path(file) for path, file in server["routes"].items()}
        control = Path(server["control"]) if server.get("control") else None
        counted = frozenset(server.get("counted", ()))
        ports[name] = _serve_jwks(routes, server.get("tls"), control, counted).server_address[1]
    from httpbin import app as httpbin_app

    ports["httpbin"] = int(_serve_wsgi(httpbin_app).effective_port)
    ports["productpage"] = int(_serve_wsgi(bookinfo_app).effective_port)
    sys.stdout.write(json.dumps({"ports": ports}) + "\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1])
