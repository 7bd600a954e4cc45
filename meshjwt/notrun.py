"""What a run could not run and why, one line each, for the end of a ``tox`` run (``$MESHJWT_NOT_RUN``).

``toxfile.py`` points ``$MESHJWT_NOT_RUN`` at a file per tox env and prints every env's lines last; outside tox
the variable is unset and nothing is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "MESHJWT_NOT_RUN"


def in_ci() -> bool:
    """Whether this is a CI run (``$CI`` true): there, data a check needs missing is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def record(lines: Iterable[str]) -> None:
    """Append ``lines`` (one line each) to ``$MESHJWT_NOT_RUN`` when it is set."""
    target = os.environ.get(ENV_VAR)
    lines = [" ".join(line.split()) for line in lines]
    if not target or not lines:
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines))
