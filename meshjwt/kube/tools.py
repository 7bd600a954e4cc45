"""Running the cluster tools (kind, istioctl, kubectl export …): one line on failure, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from meshjwt.errors import EnvironmentProblem


def tail(text: str, limit: int = 300) -> str:
    """The end of a tool's output on one line (where tools put the reason)."""
    return " ".join((text or "").split())[-limit:]


def run_tool(argv: Sequence[str], *, what: str, timeout: float, input: str | None = None) -> str:
    """Run ``argv``; return its stdout. A non-zero exit, a timeout or a missing binary becomes an
    EnvironmentProblem naming ``what`` and the tool's last words."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"{what} did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise EnvironmentProblem(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise EnvironmentProblem(f"{what} failed (exit {done.returncode}): {tail(done.stderr or done.stdout)}")
    return done.stdout


def describe(exc: BaseException) -> str:
    """One line for an exception a library raised from a tool (pytest-kind's CalledProcessError, say)."""
    if isinstance(exc, subprocess.CalledProcessError):
        out = exc.stderr or exc.output or b""
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return f"{' '.join(map(str, exc.cmd[:3]))} failed (exit {exc.returncode}): {tail(text)}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{' '.join(map(str, exc.cmd[:3]))} did not finish within {exc.timeout:g}s"
    return f"{type(exc).__name__}: {tail(str(exc))}"
