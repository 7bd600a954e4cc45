"""Issue 17: a verdict that a version table decides, not a real component, says so (``evidence: model``)."""

from __future__ import annotations

from meshjwt.report.model import case_dict
from meshjwt.scenarios.loader import BUILTIN_DIR, load_file
from meshjwt.scenarios.runner import CaseResult
from meshjwt.settings import Settings
from meshjwt.targets.cluster import ClusterMesh, ClusterOptions
from meshjwt.targets.local import LocalMesh

LIFECYCLE = {s.name: s for s in load_file(BUILTIN_DIR / "07-jwks-lifecycle.yaml")}


def entry(mesh, scenario_name: str, case_name: str) -> dict:
    scenario = LIFECYCLE[scenario_name]
    case = next(c for c in scenario.cases if c.name == case_name)
    result = CaseResult(case=case, scenario=scenario, request="-", expected=case.expect,
                        evidence=mesh.evidence(scenario, case))  # fmt: skip
    return case_dict(result)


def test_the_local_target_names_model_evidence_where_a_version_table_decides() -> None:
    mesh = LocalMesh(Settings(version="1.28.4"), '{"keys":[]}')  # not started: evidence is known before
    leaked = entry(mesh, "jwks-lifecycle-leaked-fake-jwks", "fake-jwks-token-refused")
    assert leaked["evidence"] == "model" and "1.28.4" in leaked["evidenceBasis"] and "leaked" in leaked["evidenceBasis"]
    assert entry(mesh, "jwks-lifecycle-webhook-refuses", "nothing-in-force")["evidence"] == "model"
    assert "evidence" not in entry(mesh, "jwks-lifecycle-rotation", "old-key-before-rotation")  # real Envoy


def test_a_cluster_verdict_rests_on_the_cluster() -> None:
    mesh = ClusterMesh(Settings(target="cluster", target_options=ClusterOptions(namespace_prefix="t")), "{}")
    assert "evidence" not in entry(mesh, "jwks-lifecycle-leaked-fake-jwks", "fake-jwks-token-refused")
