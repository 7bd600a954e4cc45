"""Loopback ports for the local mesh's listeners."""

from __future__ import annotations

import socket

import pytest

from meshjwt.localmesh import ports


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    top = ports._ephemeral_start()
    for _ in range(20):
        port = ports.free_port()
        assert ports.LOWEST <= port < top  # never the local port an outgoing connection may take meanwhile
        with socket.socket() as sock:
            sock.bind((ports.HOST, port))


def test_without_room_below_the_ephemeral_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_start", lambda: ports.LOWEST)
    assert 0 < ports.free_port() < 65536
