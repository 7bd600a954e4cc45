"""Loopback ports: pick free ones, or check that a requested one is free."""

from __future__ import annotations

import socket

from meshjwt.errors import EnvironmentProblem

HOST = "127.0.0.1"


def free_port() -> int:
    """A port the kernel says is free right now on 127.0.0.1."""
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
