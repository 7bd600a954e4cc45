"""Build the ConformanceReport document (plain dicts, ready for YAML) from a run's case results.

Verdicts follow Gateway API conformance: unsupported cases are listed as such and never count as
failures; the overall result is ``failure`` if anything failed, ``partial`` if nothing failed but
something was unsupported or not run, else ``success``. Every free text is scrubbed of tokens and keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from meshjwt import __version__
from meshjwt.mesh import MeshInfo
from meshjwt.scenarios.model import Expectation
from meshjwt.scenarios.runner import CaseResult, Verdict
from meshjwt.tokens import scrub

API_VERSION = "meshjwt.conformance/v1alpha1"
KIND = "ConformanceReport"
#: verdicts of a case in the report; "error" (the case crashed) counts as failed
COUNTED_AS = {"passed": "passed", "failed": "failed", "error": "failed", "unsupported": "skipped"}

@dataclass(frozen=True)
class Implementation:
    """Who ran the suite against what (Gateway API's ``implementation`` block); all optional."""

    organization: str | None = None
    project: str | None = None
    url: str | None = None
    version: str | None = None
    contact: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"organization": self.organization, "project": self.project, "url": self.url,
                "version": self.version, "contact": list(self.contact)}  # fmt: skip


@dataclass(frozen=True)
class RunInfo:
    """What the report needs to know about the run besides the results."""

    target: str
    mesh: MeshInfo
    timeouts: Mapping[str, float]
    implementation: Implementation = field(default_factory=Implementation)
    command: str = ""
    date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    interrupted: bool = False
    collected: int | None = None  # scenario cases selected for the run (None: unknown)
    rehearsal: str | None = None  # set when the cluster was simulated: what ran, never conformance evidence


#: the folder, in a report folder, of the diagnostics of failed cases
ARTIFACTS_DIR = "artifacts"


def artifacts_path(case_id: str) -> str:
    """Where a case's diagnostics go, relative to its report folder: ``artifacts/<scenario>__<case>``."""
    return f"{ARTIFACTS_DIR}/{case_id.replace('/', '__')}"


def mode(run: RunInfo) -> str:
    """What kind of evidence the report is: ``rehearsal`` (simulated cluster), ``reference`` (the reference model of
    Istio, e.g. the local target) or ``conformance`` (a running mesh)."""
    return "rehearsal" if run.rehearsal else "reference" if run.mesh.reference else "conformance"


#: how a rehearsal report titles itself, wherever it is shown
REHEARSAL_TITLE = "JWT rehearsal (simulated cluster, not conformance evidence)"


#: how a reference run (the local target's model of Istio) titles itself
REFERENCE_TITLE = "JWT conformance of the reference model (not a verdict on a running mesh)"


def title(report: Mapping[str, Any]) -> str:
    """``JWT conformance``, or the rehearsal's or the reference run's title."""
    if report.get("rehearsal"):
        return REHEARSAL_TITLE
    return REFERENCE_TITLE if report.get("mode") == "reference" else "JWT conformance"


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def shown_path(source: str) -> str:
    """``source`` relative to the working directory when it lies below it (reports travel)."""
    try:
        return str(Path(source).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return source


def verdict_of(result: CaseResult) -> str:
    """The report verdict: the runner's, with a case left pending (it raised) reported as ``error``."""
    verdict = Verdict(result.verdict).value
    return verdict if verdict in COUNTED_AS else Verdict.ERROR.value


def overall(statistics: Mapping[str, int]) -> str:
    """``failure`` | ``partial`` | ``success`` from counts of passed/failed/skipped/notRun."""
    if statistics.get("failed", 0):
        return "failure"
    if statistics.get("skipped", 0) or statistics.get("notRun", 0):
        return "partial"
    return "success"


def count(verdicts: Iterable[str]) -> dict[str, int]:
    stats = {"passed": 0, "failed": 0, "skipped": 0}
    for verdict in verdicts:
        stats[COUNTED_AS.get(verdict, "failed")] += 1
    return stats


def expected_dict(expected: Expectation) -> dict[str, Any]:
    """Status plus whichever body/header constraints and reason the expectation has."""
    doc: dict[str, Any] = {"status": expected.status}
    if expected.body is not None:
        doc["body"] = scrub(expected.body)
    if expected.body_contains is not None:
        doc["bodyContains"] = scrub(expected.body_contains)
    if expected.body_lacks is not None:
        doc["bodyNotContains"] = scrub(expected.body_lacks)
    if expected.headers:
        doc["headers"] = {k: scrub(v) for k, v in expected.headers.items()}
    if expected.reason:
        doc["reason"] = expected.reason
    return doc


def case_dict(result: CaseResult) -> dict[str, Any]:
    """One case's evidence: request (token masked), expected, observed, verdict, attempts."""
    outcome = result.outcome
    doc: dict[str, Any] = {
        "name": result.case.name,
        "request": scrub(result.request),
        "expected": expected_dict(result.expected),
        "observed": scrub(result.observed),
        "verdict": verdict_of(result),
        "attempts": outcome.attempts if outcome else 0,
        "seconds": round(outcome.seconds, 3) if outcome else 0.0,
    }
    if result.case.description:
        doc["description"] = result.case.description
    if result.evidence:
        doc["evidence"], doc["evidenceBasis"] = result.evidence
    if result.case.features:
        doc["features"] = list(result.case.features)
    if result.detail and doc["verdict"] != "passed":
        doc["detail"] = scrub(result.detail)
    if outcome and doc["verdict"] == "failed":
        doc["answersSeen"] = [scrub(answer) for answer in outcome.answers]
        doc["decidedBy"] = ("the first wrong answer (the proxy had confirmed the applied config)"
                            if outcome.decisive is not None and outcome.accepted is None else
                            "a 2xx to a token that must be refused (final whatever came after)"
                            if outcome.accepted is not None else
                            "no N consecutive matching answers within the timeout 'converge'")  # fmt: skip
    return doc


def latest(results: Iterable[CaseResult], interrupted: bool) -> list[CaseResult]:
    """One result per case id (the last one), in first-run order; a case cut short by Ctrl-C is dropped."""
    by_id: dict[str, CaseResult] = {}
    for result in results:
        if not (interrupted and result.verdict == Verdict.PENDING):
            by_id[result.case.id] = result  # a re-run replaces the earlier result, keeping its place
    return list(by_id.values())


def features(results: Sequence[CaseResult]) -> dict[str, list[str]]:
    """Supported: needed by a case that ran. Unsupported: what made a case unsupported — the features the
    runner found missing for it, else (the target refused, say) those of its features no case that ran needs."""
    ran = {f for r in results if verdict_of(r) != "unsupported" for f in r.features}
    lacking: set[str] = set()
    for result in results:
        if verdict_of(result) == "unsupported":
            lacking |= set(result.missing_features) or (set(result.features) - ran)
    return {"supported": sorted(ran - lacking), "unsupported": sorted(lacking)}


def claims(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """Per scenario (claim): id, section, source, features, result, statistics and its cases."""
    grouped: dict[str, list[CaseResult]] = {}
    for result in results:
        grouped.setdefault(result.scenario.name, []).append(result)
    out = []
    for name, group in grouped.items():
        scenario = group[0].scenario
        stats = count(verdict_of(r) for r in group)
        out.append({
            "id": name,
            "section": scenario.section,
            "source": shown_path(scenario.source),
            "features": list(scenario.features),
            "result": overall(stats),
            "statistics": stats,
            "cases": [case_dict(r) for r in group],
        })  # fmt: skip
    return out


def vulnerabilities(results: Sequence[CaseResult], mesh: MeshInfo) -> list[dict[str, Any]]:
    """What the mesh let through that it must refuse: every case that got a 2xx (even once, among many answers) to
    a forged or otherwise refused token is listed as ``accepted`` with the request and the answer; a case whose
    description names a known vulnerability of the mesh's version (``VULNERABILITY …``) says it is confirmed."""
    found = []
    for result in results:
        answer = result.accepted
        if answer is None or not result.case.token.is_attack:
            continue
        known = result.case.description.startswith("VULNERABILITY")
        finding = (" ".join(result.case.description.split()) if known else
                   f"the mesh accepted token {result.case.token.describe()}, which it must refuse "
                   f"(expected {result.expected.describe()})")  # fmt: skip
        found.append({"case": result.case.id, "meshVersion": f"{mesh.flavor} {mesh.version}",
                      "kind": "known" if known else "accepted", "finding": scrub(finding),
                      "request": scrub(result.request), "answer": scrub(answer.summary())})  # fmt: skip
    return found


#: what a mutation score means, as every report says it
SHARPNESS_MEANING = ("deliberately broken versions of the local reference mesh (mutants: each a realistic bug of "
                     "one Istio field or behaviour) that this suite version's built-in cases fail; a mutant that "
                     "survived would be a bug this suite passes")  # fmt: skip


def sharpness() -> dict[str, Any]:
    """The mutation score of this suite version (``meshjwt/sharpness.json``, written by ``tox -e mutants``)."""
    import json
    from importlib import resources

    try:
        recorded = json.loads(resources.files("meshjwt").joinpath("sharpness.json").read_text())
        mutants, killed = int(recorded["catalogue"]), int(recorded["killed"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"mutants": None, "killed": None, "score": "not measured", "meaning": SHARPNESS_MEANING}
    return {"mutants": mutants, "killed": killed, "score": f"{killed} of {mutants} mutants killed",
            "suiteVersion": __version__, "measuredWith": recorded.get("measuredWith", "tox -e mutants"),
            "meaning": SHARPNESS_MEANING}  # fmt: skip


def build_report(results: Iterable[CaseResult], run: RunInfo) -> dict[str, Any]:
    """The ConformanceReport document for ``results`` of the run described by ``run``."""
    chosen = latest(list(results), run.interrupted)
    stats = count(verdict_of(r) for r in chosen)
    stats["notRun"] = max(0, (run.collected or 0) - len(chosen))
    mesh = run.mesh
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "date": run.date.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "suiteVersion": __version__,
        "target": run.target,
        # a rehearsal runs the suite's own code against a simulated cluster: it is never conformance evidence
        "mode": mode(run),
        **({"rehearsal": {"simulatedCluster": True, "note": run.rehearsal}} if run.rehearsal else {}),
        **({"reference": {"note": mesh.reference}} if mesh.reference and not run.rehearsal else {}),
        "mesh": {"flavor": mesh.flavor, "version": mesh.version, "jwksFetchMode": mesh.jwks_fetch_mode,
                 "details": {k: scrub(str(v)) for k, v in mesh.details.items()}},  # fmt: skip
        "implementation": run.implementation.as_dict(),
        "sharpness": sharpness(),
        "timeouts": {camel(k): v for k, v in run.timeouts.items()},
        "howToReproduce": scrub(run.command),
        "interrupted": run.interrupted,
        "result": overall(stats),
        "statistics": stats,
        "features": features(chosen),
        "claims": claims(chosen),
        "vulnerabilities": vulnerabilities(chosen, mesh),
    }


def summary_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per claim for the terminal table: claim, section, cases, passed, failed, unsupported."""
    return [
        {"claim": c["id"], "section": c["section"], "cases": len(c["cases"]), "passed": c["statistics"]["passed"],
         "failed": c["statistics"]["failed"], "unsupported": c["statistics"]["skipped"]}
        for c in report["claims"]
    ]  # fmt: skip
