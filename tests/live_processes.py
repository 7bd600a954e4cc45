"""Which live processes a run left: the one scan of /proc the hygiene, playground and probe tests share."""

from __future__ import annotations

import os
from pathlib import Path


def live_mentioning(marker: str) -> dict[int, str]:
    """Pid → command line of every live (non-zombie) process but this one whose argv mentions ``marker``
    (the runs put their work folder in every child's argv)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(pid) != os.getpid():
            found[int(pid)] = cmdline
    return found


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of the live processes that mention ``marker``."""
    return list(live_mentioning(marker).values())
