"""What a run could not run and why, one line each, for the end of a ``tox`` run (``$MESHJWT_NOT_RUN``).

``toxfile.py`` points ``$MESHJWT_NOT_RUN`` at a file per tox env and prints every env's lines last; outside tox
the variable is unset and nothing is recorded. Only the outermost process of an env records (:func:`claim`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

ENV_VAR = "MESHJWT_NOT_RUN"


def in_ci() -> bool:
    """Whether this is a CI run (``$CI`` true): there, data a check needs missing is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def claim() -> str | None:
    """Take ``$MESHJWT_NOT_RUN`` for this process (the outermost run of the env): it is removed from the
    environment, so that the runs this one starts (pytest in pytest, xdist workers) do not report too."""
    return os.environ.pop(ENV_VAR, None)


def record(lines: Iterable[str], target: str | None) -> None:
    """Append ``lines`` (one line each) to ``target`` (from :func:`claim`) when there is one."""
    lines = [" ".join(line.split()) for line in lines]
    if not target or not lines:
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines))


def summary(ran: Mapping[str, Path]) -> list[str]:
    """The lines that end a tox run: per env that ran (name → its not-run file), what it did not run and why."""
    lines = [f"not run ({env}): {line}" for env, path in ran.items() if path.is_file()
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
    return ["what did not run, and why:", *lines] if lines else []
