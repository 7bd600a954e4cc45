"""Unsupported is not OK: with ``--security``, a probe that cannot run fails naming the missing backend and how to
install it; ``--allow-unsupported-probes`` reports it unsupported (skipped); without ``--security`` the probe's
tests are not part of the run (deselected, not skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshjwt.security import backends

ROOT = Path(__file__).resolve().parents[1]
SUITES = str(ROOT / "suites")
pytest_plugins = ["pytester"]
ONE = "BASE-apache2-deny-paths"


@pytest.fixture
def no_apache2(monkeypatch: pytest.MonkeyPatch) -> None:
    """apache2 is installed on this machine: the search is pointed where it is not (a machine without it)."""
    monkeypatch.setitem(backends._SEARCH, "apache2", ("apache2-not-installed", "/nonexistent/apache2"))


@pytest.mark.integration
def test_a_probe_that_cannot_run_fails_naming_the_backend(pytester: pytest.Pytester, no_apache2: None) -> None:
    result = pytester.runpytest(SUITES, "--security", "-k", ONE, "--reports-dir", "r", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the probe cannot run: apache2 is not installed (Debian: apt-get install apache2)*"])


@pytest.mark.integration
def test_allow_unsupported_probes_keeps_reporting_them_unsupported(pytester: pytest.Pytester, no_apache2: None) -> None:
    result = pytester.runpytest(SUITES, "--security", "--allow-unsupported-probes", "-k", ONE, "--reports-dir", "r",
                                "-q", "-rs")  # fmt: skip
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*unsupported: apache2 is not installed*"])


def test_without_security_the_probe_is_deselected(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(SUITES, "-k", "probe or products-0-no-token", "--co", "-q", "--reports-dir", "r")
    assert "test_path_normalization_probe" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*products-0-no-token*", "1/* tests collected (* deselected)*"])
