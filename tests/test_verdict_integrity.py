"""Verdict integrity: an answer on confirmed config is final, and a forged token accepted once is never forgiven
(listed under the report's vulnerabilities with the request and the answer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshjwt.keys import KeySet
from meshjwt.mesh import Mesh, MeshInfo, Request, Response
from meshjwt.report.model import RunInfo, build_report
from meshjwt.scenarios.loader import BUILTIN_DIR, load_file
from meshjwt.scenarios.runner import ScenarioRunner, Verdict
from meshjwt.settings import Settings, Timeouts
from meshjwt.tokens import TokenFactory

RA_ALONE = next(s for s in load_file(BUILTIN_DIR / "01-request-authentication.yaml") if s.name == "ra-alone")
TIMEOUTS = Timeouts(converge=0.3, poll_interval=0.001, consecutive=3)


class ScriptedMesh(Mesh):
    """A mesh answering as a script says: the reference answer, but a 2xx to every ``nth`` request with a token."""

    name = "scripted"

    def __init__(self, *, confirms: bool, nth: int) -> None:
        self.confirms, self.nth, self.with_token = confirms, nth, 0

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def apply(self, resources: Sequence[Mapping[str, Any]], *, jwks_fetch_mode: str | None = None) -> None: ...
    def clear(self) -> None: ...

    def info(self) -> MeshInfo:
        return MeshInfo("scripted", "istio", "1.30", "istiod")

    def variables(self) -> Mapping[str, str]:
        return {"JWKS": "{}", "NAMESPACE": "foo"}

    def confirms_config(self, client: str) -> bool:
        return self.confirms

    def request(self, request: Request) -> Response:
        if "Authorization" not in request.headers:
            return Response(200, body="{}")
        self.with_token += 1
        if self.with_token % self.nth == 1:  # the first, then every nth: 200, 401, 401, 401, 200, ...
            return Response(200, body='{"headers": {}}')
        return Response(401, body="Jwt is expired")


def run_expired(mesh: ScriptedMesh) -> tuple[Any, dict[str, Any]]:
    case = next(c for c in RA_ALONE.cases if c.name == "expired")
    settings = Settings(timeouts=TIMEOUTS)
    runner = ScenarioRunner(mesh, TokenFactory(KeySet(("RS256",))), settings)
    result = runner.run(RA_ALONE, case)
    report = build_report(runner.results, RunInfo("scripted", mesh.info(), TIMEOUTS.as_dict()))
    return result, report


def test_a_token_accepted_once_among_refusals_fails_and_is_a_vulnerability_even_unconfirmed():
    result, report = run_expired(ScriptedMesh(confirms=False, nth=4))
    assert result.verdict == Verdict.FAILED
    assert result.outcome is not None and result.outcome.attempts <= TIMEOUTS.consecutive  # failed at once
    assert result.detail.startswith("ATTACK ACCEPTED: the mesh answered 200")
    (found,) = report["vulnerabilities"]
    assert found["case"] == "ra-alone/expired" and found["kind"] == "accepted"
    assert found["answer"].startswith("200") and "Authorization" in found["request"]
    (case,) = report["claims"][0]["cases"]
    assert case["decidedBy"].startswith("a 2xx") and case["answersSeen"][0].startswith("#1: 200")
    assert "…" in found["request"]  # the token is masked


def test_on_confirmed_config_a_wrong_answer_is_final_and_the_answers_are_shown():
    result, _ = run_expired(ScriptedMesh(confirms=True, nth=1000))
    assert result.verdict == Verdict.FAILED and "failed at once" in result.detail and "answers seen: ['#1: 200" in \
        result.detail


def test_the_report_states_the_suites_mutation_score():
    _, report = run_expired(ScriptedMesh(confirms=True, nth=1000))
    sharpness = report["sharpness"]
    assert sharpness["mutants"] >= 40 and sharpness["killed"] == sharpness["mutants"]
    assert sharpness["score"] == f"{sharpness['killed']} of {sharpness['mutants']} mutants killed"
