"""Lifecycle scenarios on the real local mesh: steps run in order, expectApply, versions, unsupported operations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshjwt.errors import EnvironmentProblem, FailsCase
from meshjwt.keys import KeySet
from meshjwt.mesh import Mesh
from meshjwt.scenarios.loader import BUILTIN_DIR, load_file
from meshjwt.scenarios.model import Scenario
from meshjwt.scenarios.runner import ScenarioRunner, Unsupported
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets.local import LocalMesh, LocalOptions
from meshjwt.tokens import TokenFactory

pytestmark = pytest.mark.integration  # every test here starts real processes

LIFECYCLE = {s.name: s for s in load_file(BUILTIN_DIR / "07-jwks-lifecycle.yaml")}
FAST = {"jwks_refresh_interval": 0.1, "jwks_retry_interval": 0.02}


def settings(version: str = "1.30") -> Settings:
    return Settings(version=version, timeouts=Timeouts.of(LocalMesh.default_timeouts, {"converge": 1.5}),
                    target_options=LocalOptions(**FAST))


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return KeySet(("RS256",))


def started(mesh: LocalMesh) -> Iterator[LocalMesh]:
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture(scope="module")
def mesh(keys: KeySet) -> Iterator[LocalMesh]:
    yield from started(LocalMesh(settings(), keys.jwks_json()))


def run(mesh: Mesh, keys: KeySet, scenario: Scenario, *names: str) -> list[str]:
    runner = ScenarioRunner(mesh, TokenFactory(keys), mesh.settings)  # type: ignore[attr-defined]
    cases = [c for c in scenario.cases if not names or c.name in names]
    runner.plan([(scenario, c) for c in cases])
    verdicts = []
    for case in cases:
        try:
            verdicts.append(runner.run(scenario, case).verdict)
        except Unsupported:
            verdicts.append("unsupported")
        except FailsCase as exc:
            verdicts.append(f"error: {exc}")
    mesh.clear()
    mesh.restore_jwks_server()
    return verdicts


def test_a_later_step_alone_performs_the_earlier_steps_first(mesh: LocalMesh, keys: KeySet) -> None:
    """Selecting only 'new-key-after-refresh' still rotates the keys first (else its token stays refused)."""
    assert run(mesh, keys, LIFECYCLE["jwks-lifecycle-rotation"], "new-key-after-refresh") == ["passed"]


def test_every_lifecycle_scenario_passes_at_the_default_version(mesh: LocalMesh, keys: KeySet) -> None:
    for name, scenario in LIFECYCLE.items():
        assert set(run(mesh, keys, scenario)) == {"passed"}, name


def test_a_mesh_accepting_what_the_webhook_refuses_fails_the_scenario(mesh: LocalMesh, keys: KeySet,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    text = (BUILTIN_DIR / "07-jwks-lifecycle.yaml").read_text().split("\n---\n")[-1]
    valid = text.replace('jwks: "not a key set"', 'jwksUri: "http://nginx-proxy.${NAMESPACE}/get_jwks"')
    (tmp_path / "s.yaml").write_text(valid)
    [scenario] = load_file(tmp_path / "s.yaml")
    [verdict] = run(mesh, keys, scenario)
    assert verdict.startswith("error") and "accepted resources that Istio's validation webhook refuses" in verdict


@pytest.mark.parametrize(("version", "verdict"), [("1.28.4", "failed"), ("1.28", "passed"), ("1.29.0", "failed")])
def test_the_leaked_fake_jwks_is_accepted_only_on_affected_versions(keys: KeySet, version: str, verdict: str) -> None:
    for mesh in started(LocalMesh(settings(version), keys.jwks_json())):
        scenario = LIFECYCLE["jwks-lifecycle-leaked-fake-jwks"]
        assert run(mesh, keys, scenario, "fake-jwks-token-refused") == [verdict]


class WithoutLifecycle(LocalMesh):
    """A target that has none of the lifecycle operations (the Mesh defaults)."""

    rotate_jwks = Mesh.rotate_jwks
    jwks_server_down = Mesh.jwks_server_down
    fake_jwks_signing_key = Mesh.fake_jwks_signing_key


def test_operations_a_target_lacks_make_cases_unsupported_never_passed(keys: KeySet) -> None:
    for mesh in started(WithoutLifecycle(settings(), keys.jwks_json())):
        # the steps after one that could not be done are unsupported too (they would test nothing)
        assert run(mesh, keys, LIFECYCLE["jwks-lifecycle-rotation"]) == ["passed", *["unsupported"] * 3]
        assert run(mesh, keys, LIFECYCLE["jwks-lifecycle-outage-envoy"]) == ["unsupported", "unsupported"]
        assert run(mesh, keys, LIFECYCLE["jwks-lifecycle-leaked-fake-jwks"]) == ["unsupported", "passed"]


class RotationNeverHappens(LocalMesh):
    """A target whose rotation silently does nothing (the kind target's old marker: a wait that never ends or a
    served set istiod never pushes)."""

    def rotate_jwks(self, jwks_json: str) -> None:
        return


class RefreshErrors(LocalMesh):
    def await_jwks_refresh(self) -> None:
        raise EnvironmentProblem("istiod's JWKS refresh did not come (test)")


def test_a_failed_step_leaves_the_later_steps_not_run(keys: KeySet) -> None:
    """Issue 17: after a rotation that never happened, 'old-key-still-published' passed on its own."""
    for mesh in started(RotationNeverHappens(settings(), keys.jwks_json())):
        verdicts = run(mesh, keys, LIFECYCLE["jwks-lifecycle-rotation"])
        assert verdicts == ["passed", "passed", "failed", "error: not run: step new-key-after-refresh failed"]


def test_an_errored_step_leaves_the_later_steps_not_run(keys: KeySet) -> None:
    for mesh in started(RefreshErrors(settings(), keys.jwks_json())):
        verdicts = run(mesh, keys, LIFECYCLE["jwks-lifecycle-outage-istiod"])
        assert verdicts[0] == "passed" and verdicts[1].startswith("error: istiod's JWKS refresh did not come")
        assert verdicts[2] == "error: not run: step keeps-last-keys errored"
