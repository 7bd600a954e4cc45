"""``meshjwt run``: the built-in conformance suites of the installed package, run by pytest in any folder.

Reports go to ``./reports/<target>/`` (``--reports-dir`` moves them). Every argument is a pytest option
(``meshjwt run --help`` lists the suite's). The run uses its own pytest configuration (``run.ini`` beside this module)
instead of any found in the current folder or its parents, so the suite behaves the same wherever it starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from meshjwt import launcher
from meshjwt.data import suites_dir


def pytest_args(user_args: Sequence[str], cwd: Path | None = None) -> list[str]:
    """pytest's arguments: the packaged suites, their configuration, this folder as rootdir, then the user's."""
    config = resources.files("meshjwt").joinpath("run.ini")  # not the plugin's package: pytest imports that
    return [str(suites_dir()), "-c", str(config), f"--rootdir={cwd or Path.cwd()}", *user_args]


def main(user_args: Sequence[str]) -> int:
    """Run the suites; pytest's exit code. Messages of the run name ``meshjwt`` commands (:mod:`meshjwt.launcher`)."""
    import pytest  # the suite's imports only when running it

    previous = os.environ.get(launcher.ENV_VAR)
    os.environ[launcher.ENV_VAR] = "meshjwt"
    try:
        return int(pytest.main(pytest_args(user_args)))
    finally:  # called in process (tests), the caller's environment is left as it was
        if previous is None:
            os.environ.pop(launcher.ENV_VAR, None)
        else:
            os.environ[launcher.ENV_VAR] = previous
