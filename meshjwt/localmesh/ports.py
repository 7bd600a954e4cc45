"""Loopback ports: pick free ones, or check that a requested one is free."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from meshjwt.errors import EnvironmentProblem

HOST = "127.0.0.1"
#: listeners are picked below the kernel's ephemeral range: a port picked there could be taken as the local
#: port of any outgoing connection before the listener binds it ("Address already in use", seen in CI)
LOWEST = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    """Where the kernel's ephemeral ports start (Linux: read; elsewhere the IANA range, 49152)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free right now on 127.0.0.1, below the ephemeral range where one exists (else the kernel's pick)."""
    top = _ephemeral_start()
    for _ in range(50):
        port = random.randrange(LOWEST, top) if top > LOWEST else 0
        if port and _can_bind(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def require_free(port: int, what: str) -> int:
    """Return ``port`` if it can be bound, else raise a one-line EnvironmentProblem naming ``what``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise EnvironmentProblem(
                f"port {HOST}:{port} for {what} is already in use ({exc.strerror}); "
                "free it or choose another port"
            ) from None
    return port


def is_listening(port: int) -> bool:
    """True if something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0
