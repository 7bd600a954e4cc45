"""What did not run is said, never hidden: the not-run lines of a tox env, golden data absent (a skip, a failure
under CI=true), and the rehearsal without golden data."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshjwt import notrun
from rehearsal.__main__ import main as rehearsal_main
from rehearsal.istio.golden import ENV_VAR

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]

GOLDEN_TEST = """
from istio_golden import require

DATA = require("authz/http")

def test_uses_it():
    assert DATA
"""


@pytest.fixture
def no_golden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    return tmp_path / "nowhere"


def test_record_writes_one_line_each_only_for_the_claimant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "not-run" / "unit.txt"
    monkeypatch.setenv(notrun.ENV_VAR, str(target))
    claimed = notrun.claim()
    assert claimed == str(target) and notrun.ENV_VAR not in __import__("os").environ  # children do not report
    notrun.record(["a\nb", "c"], claimed)
    notrun.record(["d"], None)
    assert target.read_text() == "a b\nc\n"


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "errors")])
def test_golden_data_absent_is_a_skip_except_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_golden: Path, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    pytester.makepyfile(test_golden=GOLDEN_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**{outcome: 1})
    if ci:
        result.stdout.fnmatch_lines([f"*Istio golden files not found*{no_golden}*CI must run the golden checks*"])


def test_the_rehearsal_without_golden_data_says_so_and_passes(
    monkeypatch: pytest.MonkeyPatch, no_golden: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(notrun.ENV_VAR, str(tmp_path / "rehearsal.txt"))
    assert rehearsal_main(["all"]) == 0
    assert "rehearsal: not run: Istio golden files not found" in capsys.readouterr().out
    assert (tmp_path / "rehearsal.txt").read_text().startswith("rehearsal (kind and cluster legs): not run: Istio")


def test_the_rehearsal_without_golden_data_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, no_golden: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    assert rehearsal_main(["all"]) == 3
    assert "CI must run the rehearsal" in capsys.readouterr().err


def test_tox_ends_with_what_did_not_run(tmp_path: Path) -> None:
    """toxfile.py prints these lines after tox's own summary (at exit), for the envs that ran."""
    (tmp_path / "unit.txt").write_text("3 skipped (tests/x.py): why\n")
    ran = {"unit": tmp_path / "unit.txt", "lint": tmp_path / "lint.txt"}  # lint ran, nothing to say
    assert notrun.summary(ran) == ["what did not run, and why:", "not run (unit): 3 skipped (tests/x.py): why"]
    assert notrun.summary({"lint": tmp_path / "lint.txt"}) == []
