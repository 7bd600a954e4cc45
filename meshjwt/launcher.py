"""How this run was started (the ``meshjwt`` command, a tox env, or pytest), so that messages name the commands the
user has: ``meshjwt run --target local`` for a user of the installed package, ``tox -e local`` in a checkout."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: set by ``meshjwt run`` for the pytest run it starts
ENV_VAR = "MESHJWT_LAUNCHER"

#: what to run for each kind of run, per launcher
COMMANDS: dict[str, dict[str, str]] = {
    "local": {"meshjwt": "meshjwt run --target local", "tox": "tox -e local", "pytest": "pytest suites --target local"},
    "security": {"meshjwt": "meshjwt run --target local --security", "tox": "tox -e security",
                 "pytest": "pytest suites --target local --security"},
    "kind": {"meshjwt": "meshjwt run --target kind", "tox": "tox -e e2e", "pytest": "pytest suites --target kind"},
}  # fmt: skip


def launcher(env: Mapping[str, str] | None = None) -> str:
    """``meshjwt``, ``tox`` or ``pytest``."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR) == "meshjwt":
        return "meshjwt"
    return "tox" if env.get("TOX_ENV_NAME") else "pytest"


def command(kind: str, env: Mapping[str, str] | None = None) -> str:
    """The command that starts a run of ``kind`` (a key of :data:`COMMANDS`) the way this one was started."""
    return COMMANDS[kind][launcher(env)]
