"""Ctrl-C and SIGTERM: nothing left behind, whenever they arrive, and no traceback.

tox answers a terminal's Ctrl-C by sending SIGINT again, SIGTERM 0.3 s later and SIGKILL 0.2 s after that.
Without this plugin the second signal lands in pytest's own interrupt handling or in the mesh's teardown
(a traceback, a work folder or processes left behind) and SIGTERM kills Python without any cleanup.

Here SIGINT and SIGTERM first do the last-resort cleanup at once (SIGKILL the local mesh's process groups,
remove its run folder: a few milliseconds, before any SIGKILL can come), then raise KeyboardInterrupt so
pytest reports the run interrupted and writes the report. From that moment (a second signal could otherwise
land while pytest starts handling the first: a traceback), and during the normal end of a session, both
signals are ignored so the teardown and the report are not cut short.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from types import FrameType
from typing import Any

import pytest

from meshjwt.localmesh import processes, rundirs

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PREVIOUS = pytest.StashKey[dict[int, Any]]()
_signalled = threading.Event()  # a signal arrived during this run


def _ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def signalled() -> bool:
    """Whether SIGINT or SIGTERM reached this run (a start that failed after it was interrupted, not broken)."""
    return _signalled.is_set()


def _redeliver_unraisable_interrupt() -> None:
    """Wrap ``sys.unraisablehook`` (once) so that our KeyboardInterrupt, raised where Python cannot propagate it
    (a ``__del__``, an at-fork callback of ``subprocess``), is delivered again at once instead of being printed
    as a traceback while the run goes on."""
    current = sys.unraisablehook
    if getattr(current, "_meshjwt", False):
        return

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is KeyboardInterrupt and _signalled.is_set():
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, _interrupt)
            _thread.interrupt_main()  # SIGINT again: raised at the main thread's next bytecode
            return
        current(unraisable)

    hook._meshjwt = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _signalled.set()
    processes.kill_all()
    rundirs.remove_owned()
    _redeliver_unraisable_interrupt()
    _ignore_signals()  # tox's second SIGINT and its SIGTERM would only cut pytest's own interrupt handling short
    raise KeyboardInterrupt


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Install the handlers (main thread only: signal handlers cannot be set elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        _signalled.clear()
        config.stash[_PREVIOUS] = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            signal.signal(sig, _interrupt)


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """pytest has the interrupt: from here on it only tears down, reports and exits."""
    _ignore_signals()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """From here on the session only tears down and reports: a signal would only cut that short."""
    if _PREVIOUS in session.config.stash:
        _ignore_signals()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the process its previous handlers back (for in-process runs such as pytester's), unless a signal
    interrupted the run: then the process is on its way out, and tox's SIGTERM must not kill it there."""
    if _signalled.is_set():
        return
    for sig, handler in config.stash.get(_PREVIOUS, {}).items():
        signal.signal(sig, handler)
