"""Child processes that never outlive the run: own session, parent-death signal, killed as a group."""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_live: list[subprocess.Popen] = []


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: Sequence[str], *, log: Path | None = None, stdout: int | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``argv`` in its own process group; it is killed if this process dies, even by SIGKILL.

    Call from the main thread: the parent-death signal fires when the *spawning thread* exits.
    """
    log_file = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log_file,
            stderr=log_file,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=env,
        )
    finally:
        if log:
            log_file.close()
    _live.append(proc)
    return proc


def terminate(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """SIGTERM the child's process group, SIGKILL after ``grace`` seconds; reap it."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        proc.wait()
    if proc in _live:
        _live.remove(proc)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def kill_all() -> None:
    """SIGKILL the process group of every tracked child at once, without waiting (safe inside a signal
    handler: ``terminate`` reaps them later; the kernel frees their ports as they die)."""
    for proc in list(_live):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def terminate_all() -> None:
    """Stop every child this module started that is still tracked."""
    for proc in list(_live):
        terminate(proc, grace=0.5)


atexit.register(terminate_all)
