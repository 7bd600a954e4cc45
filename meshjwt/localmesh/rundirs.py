"""Run folders of the local mesh that never outlive their owner: named after the owning process, private
(0700), removed at the end of the run, and swept at the next start if the owner died without cleaning up
(SIGKILL, power loss)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

_owned: set[Path] = set()  # folders to remove if the run is interrupted before its teardown gets to them
PREFIX = "meshjwt-local-"
KEPT = "KEPT"  # a folder kept on request (--keep-workdir) holds this file and is never swept
_NAME = re.compile(r"-(?P<pid>\d+)-(?P<started>\d+|x)-[0-9a-f]{8}$")


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22): with the pid it
    names one process even after the pid is reused. ``"x"`` where there is no ``/proc``; None: no process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            return "x" if _pid_exists(pid) else None
        return None
    except (OSError, IndexError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_path(prefix: str = PREFIX, parent: Path | None = None) -> Path:
    """A fresh run folder's path naming this process (create it with ``create``)."""
    folder = Path(parent or tempfile.gettempdir())
    return folder / f"{prefix}{os.getpid()}-{_started(os.getpid()) or 'x'}-{secrets.token_hex(4)}"


def create(path: Path, *, remove_on_interrupt: bool = True) -> Path:
    """Make the folder, readable by its owner only; ``remove_owned`` removes it unless told not to."""
    if remove_on_interrupt:
        _owned.add(path)
    path.mkdir(mode=0o700)
    return path


def remove(path: Path) -> None:
    """Remove the folder and everything in it (missing: fine)."""
    shutil.rmtree(path, ignore_errors=True)
    _owned.discard(path)


def remove_owned() -> None:
    """Remove every folder this process created and has not removed yet (an interrupt's last resort)."""
    for path in list(_owned):
        remove(path)


def keep(path: Path) -> None:
    """Mark the folder as kept on request: later runs do not sweep it."""
    (path / KEPT).write_text("kept with --keep-workdir; remove the folder when done\n")


def owner_alive(path: Path) -> bool:
    """Whether the process named in the folder's name still runs (unparseable names count as alive)."""
    match = _NAME.search(path.name)
    if not match:
        return True
    started = _started(int(match["pid"]))
    return started is not None and (match["started"] == "x" or started == match["started"])


def sweep(prefix: str = PREFIX, parent: Path | None = None) -> list[Path]:
    """Remove this user's run folders whose owner is gone (unless kept on request); the folders removed."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid() and not owner_alive(path) \
                    and not (path / KEPT).exists():
                shutil.rmtree(path)
                removed.append(path)
    return removed
