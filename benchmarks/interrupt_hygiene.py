"""Ctrl-C on ``tox -e local`` at several moments of a run: what is left behind? (issue 8's measurement)

    python benchmarks/interrupt_hygiene.py [--delays 0,0.175,0.35,0.525,0.7] [--command "tox -e local --"]

For each delay: start the command in its own process group with a private TMPDIR and fixed listener ports,
wait until the local mesh's work folder appears, wait ``delay`` seconds, send SIGINT to the whole process
group (as a terminal does; tox then sends SIGINT again and SIGTERM 0.3 s later), and once the command has
exited count what is left: processes mentioning the TMPDIR (Envoy, the workloads), bound listener ports,
work folders, and tracebacks in the output. Prints one line per try and exits 1 if anything was left.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshjwt.localmesh.ports import free_port, is_listening  # noqa: E402


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of live (non-zombie) processes mentioning ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(pid) != os.getpid():
            found.append(cmdline)
    return found


def one_try(command: list[str], delay: float, timeout: float = 60) -> dict[str, object]:
    """Run ``command``, SIGINT its process group ``delay`` s after the work folder appears; what is left."""
    with tempfile.TemporaryDirectory(prefix="meshjwt-hygiene-") as tmp:
        ports = [free_port(), free_port()]
        argv = [*command, "--local-sidecar-port", str(ports[0]), "--local-gateway-port", str(ports[1]),
                "--reports-dir", str(Path(tmp) / "reports")]  # fmt: skip
        env = {**os.environ, "TMPDIR": tmp}
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not list(Path(tmp).glob("meshjwt-local-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        appeared = proc.poll() is None
        time.sleep(delay)
        sent_at = time.monotonic()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=timeout)[0].decode(errors="replace")
        exited_after = time.monotonic() - sent_at
        time.sleep(0.2)  # the kernel closes a dead process's sockets a moment after it exits
        left = {
            "processes": len(processes_mentioning(tmp)),
            "ports": sum(is_listening(p) for p in ports),
            "workdirs": len(list(Path(tmp).glob("meshjwt-*"))),
            "tracebacks": output.count("Traceback"),
        }
        report = Path(tmp) / "reports" / "local" / "conformance-report.yaml"
        return {"delay": delay, "appeared": appeared, "rc": proc.returncode, "exit_s": round(exited_after, 3),
                "report": "interrupted: true" in report.read_text() if report.exists() else None, **left}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0,0.175,0.35,0.525,0.7")
    parser.add_argument("--command", default="tox -e local --", help="the run to interrupt (pytest options follow)")
    args = parser.parse_args()
    dirty = 0
    for delay in (float(d) for d in args.delays.split(",")):
        result = one_try(shlex.split(args.command), delay)
        dirty += sum(int(result[k]) for k in ("processes", "ports", "workdirs", "tracebacks"))  # type: ignore[call-overload]
        print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    print(f"left behind in total: {dirty}")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
