"""The interrupt handler's own rules (the real Ctrl-C runs are in test_run_hygiene.py and
benchmarks/interrupt_hygiene.py)."""

from __future__ import annotations

import signal
import sys

import pytest

from meshjwt.pytest_plugin import interrupts


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The handler with its last-resort cleanup and its re-signal recorded, not done; the process's signal
    handlers and unraisable hook as they were afterwards."""
    calls: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    monkeypatch.setattr(interrupts.signal, "signal", lambda sig, handler: calls.append(f"handler {sig}"))
    monkeypatch.setattr(interrupts._thread, "interrupt_main", lambda: calls.append("again"))
    monkeypatch.setattr(interrupts.processes, "kill_all", lambda: calls.append("kill"))
    monkeypatch.setattr(interrupts.rundirs, "remove_owned", lambda: calls.append("remove"))
    monkeypatch.setattr(interrupts, "_ignore_signals", lambda: calls.append("ignore"))
    yield calls
    interrupts._signalled.clear()


def test_an_interrupt_raises_after_the_last_resort_cleanup_and_ignores_the_next_signals(handler: list[str]) -> None:
    with pytest.raises(KeyboardInterrupt):
        interrupts._interrupt(signal.SIGINT, sys._getframe())
    assert handler == ["kill", "remove", "ignore"] and interrupts.signalled()


def test_an_interrupt_python_cannot_raise_is_delivered_again(handler: list[str]) -> None:
    """Raised in a ``__del__`` (or an at-fork callback) it is 'unraisable': a traceback printed and the run
    going on. It comes again instead, once the finalizer has returned."""

    class Finalized:
        def __del__(self) -> None:
            interrupts._interrupt(signal.SIGINT, sys._getframe())

    Finalized()  # finalized at once
    assert handler == ["kill", "remove", "ignore", f"handler {signal.SIGINT}", "again"] and interrupts.signalled()


def test_other_unraisable_exceptions_keep_their_hook(handler: list[str]) -> None:
    seen: list[type] = []
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_type)
    with pytest.raises(KeyboardInterrupt):
        interrupts._interrupt(signal.SIGINT, sys._getframe())

    class Broken:
        def __del__(self) -> None:
            raise ValueError("not ours")

    Broken()
    assert seen == [ValueError]
