"""The interrupt handler's own rules (the real Ctrl-C runs are in test_run_hygiene.py and
benchmarks/interrupt_hygiene.py)."""

from __future__ import annotations

import signal
import sys

import pytest

from meshjwt.pytest_plugin import interrupts


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The handler with its last-resort cleanup and its re-signal recorded, not done."""
    calls: list[str] = []
    monkeypatch.setattr(interrupts._thread, "interrupt_main", lambda: calls.append("again"))
    monkeypatch.setattr(interrupts.processes, "kill_all", lambda: calls.append("kill"))
    monkeypatch.setattr(interrupts.rundirs, "remove_owned", lambda: calls.append("remove"))
    yield calls
    interrupts._signalled.clear()


def test_an_interrupt_raises_after_the_last_resort_cleanup(handler: list[str]) -> None:
    with pytest.raises(KeyboardInterrupt):
        interrupts._interrupt(signal.SIGINT, sys._getframe())
    assert handler == ["kill", "remove"] and interrupts.signalled()


def test_an_interrupt_inside_a_finalizer_comes_again_after_it(handler: list[str]) -> None:
    """Raised in a ``__del__`` it would be 'unraisable': a traceback printed and the run going on."""

    class Finalized:
        def __del__(self) -> None:
            interrupts._interrupt(signal.SIGINT, sys._getframe())

    Finalized()  # finalized at once
    assert handler == ["kill", "remove", "again"] and interrupts.signalled()
