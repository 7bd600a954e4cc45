"""The suite's pytest plugin, run in process with pytester: load-time refusals, stale outputs, tox's -q."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from meshjwt.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SUITES = str(ROOT / "suites")
pytest_plugins = ["pytester"]
TARGET_REFS = """\
apiVersion: meshjwt.conformance/v1alpha1
kind: Scenario
name: waypoint-policy
section: a policy bound with targetRefs (Gateway API / waypoint)
manifests:
  - inline:
      apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: at-waypoint, namespace: foo}
      spec:
        targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
        action: ALLOW
cases:
  - {name: any, token: none, expect: {status: 200}}
"""


def test_target_refs_are_refused_at_load_on_the_local_target(pytester: pytest.Pytester):
    scenario = pytester.path / "waypoint.yaml"
    scenario.write_text(TARGET_REFS)
    result = pytester.runpytest(SUITES, "--scenarios", str(scenario), "--reports-dir", "r")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.strip()]
    assert errors == [
        f"ERROR: {scenario}: scenario 'waypoint-policy': AuthorizationPolicy foo/at-waypoint: spec.targetRefs is "
        "not supported by the local mesh (it models sidecars and the ingress gateway, not Gateway API or "
        "waypoints); use spec.selector; run it on --target kind or cluster"
    ]
    assert list((pytester.path / "r" / "local").iterdir()) == [], "refused before anything ran"


@pytest.mark.integration
def test_a_run_starts_by_removing_the_previous_runs_outputs(pytester: pytest.Pytester):
    local = pytester.path / "r" / "local"
    (local / "artifacts" / "old-case").mkdir(parents=True)
    (local / "conformance-report.html").write_text("stale")
    (local / "security-report.yaml").write_text("stale: a security run's, from before security runs had a folder")
    result = pytester.runpytest(SUITES, "-k", "products-0-no-token", "--reports-dir", "r", "--no-report")
    result.assert_outcomes(passed=1)
    assert not (local / "artifacts").exists() and not (local / "conformance-report.html").exists()
    assert not (local / "security-report.yaml").exists(), "a report file this run did not write is not left"
    assert "products-0-no-token" in (local / "junit.xml").read_text()


def test_the_security_qualification_has_its_own_report_folder(pytester: pytest.Pytester):
    """tox -e security used to write reports/local/: its 53-case report replaced the conformance run's."""
    pytester.runpytest(SUITES, "--security", "--co", "-q", "--reports-dir", "r")
    assert (pytester.path / "r" / "security").is_dir() and not (pytester.path / "r" / "local").exists()


def test_each_run_kind_names_its_report_folder():
    assert Settings().target_reports_dir == Path("reports") / "local"
    assert Settings(security=True).target_reports_dir == Path("reports") / "security"
    assert Settings(target="kind", security=True).target_reports_dir == Path("reports") / "security-kind"
    assert Settings(target="cluster", reports_dir=Path("r")).target_reports_dir == Path("r") / "cluster"


def test_collect_only_leaves_the_previous_outputs(pytester: pytest.Pytester):
    local = pytester.path / "r" / "local"
    local.mkdir(parents=True)
    (local / "conformance-report.yaml").write_text("kept")
    pytester.runpytest(SUITES, "--co", "-q", "--reports-dir", "r")
    assert (local / "conformance-report.yaml").read_text() == "kept"


@pytest.mark.parametrize("env", ["local", "e2e", "cluster"])
def test_tox_passes_arguments_after_the_default_quiet_flag(env):
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    command = tox[f"testenv:{env}"]["commands"].strip()
    assert command.startswith("pytest suites --target ") and command.endswith(" -q {posargs}"), command
