"""Run a web server so that it and every worker die with the run, even when the run is SIGKILLed.

``python -m meshjwt.security.supervise PARENT_PID DIRECTORY -- ARGV...``. apache2's workers change user,
which clears a parent-death signal, and are orphaned when their master dies; so this supervisor asks for
SIGTERM when its parent (the test run) dies, starts the server in a process group of its own, and on
SIGTERM kills that whole group, removes the server's directory, and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    parent, directory, separator, *command = argv
    if separator != "--" or not command:
        print("usage: python -m meshjwt.security.supervise PARENT_PID DIRECTORY -- ARGV...", file=sys.stderr)
        return 2
    server: subprocess.Popen | None = None

    def stop(*_: object) -> None:  # may interrupt server.wait(): no waiting here (Popen's lock is held)
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the run died before the request took effect
        stop()
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    code = server.wait()
    server = None
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
