"""Messages fit how the run was started: ``meshjwt`` commands for ``meshjwt run``, tox envs under tox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshjwt import launcher
from meshjwt.run import main as run_main


def test_the_launcher_is_read_from_the_environment() -> None:
    assert launcher.launcher({}) == "pytest"
    assert launcher.launcher({"TOX_ENV_NAME": "local"}) == "tox"
    assert launcher.launcher({"TOX_ENV_NAME": "local", launcher.ENV_VAR: "meshjwt"}) == "meshjwt"
    assert launcher.command("security", {"TOX_ENV_NAME": "x"}) == "tox -e security"
    assert launcher.command("local", {launcher.ENV_VAR: "meshjwt"}) == "meshjwt run --target local"
    assert {frozenset(c) for c in launcher.COMMANDS.values()} == {frozenset({"meshjwt", "tox", "pytest"})}


def test_meshjwt_run_marks_its_pytest_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[str | None] = []
    monkeypatch.delenv(launcher.ENV_VAR, raising=False)
    monkeypatch.setattr(pytest, "main", lambda args: seen.append(os.environ.get(launcher.ENV_VAR)) or 0)
    monkeypatch.chdir(tmp_path)
    assert run_main(["--co"]) == 0 and seen == ["meshjwt"]
    assert launcher.ENV_VAR not in os.environ
