"""The security report (``reports/<target>/security-report.yaml``): token attacks and the probe's findings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from meshjwt import __version__
from meshjwt.report.writers import write_yaml
from meshjwt.scenarios.runner import CaseResult
from meshjwt.security.corpus import Corpus, hypothesis_version
from meshjwt.security.probe import Combination

API_VERSION = "meshjwt.conformance/v1alpha1"
KIND = "SecurityReport"
TOKEN_ATTACK_SCENARIO = "token-attacks"
FILE_NAME = "security-report.yaml"


def known_facts(combinations: Sequence[Combination]) -> list[dict[str, Any]]:
    """Istio's documented path-normalization facts (reference §7), each with whether this run reproduced it.

    ``reproduced`` is None when the run probed no combination that could show it.
    """
    probed = [c for c in combinations if not c.unsupported and not c.problem]

    def where(mode: str, policy: str) -> list[Combination]:
        return [c for c in probed if c.mode == mode and c.policy == policy]

    def verdict(items: list[Combination], holds: bool) -> bool | None:
        return holds if items else None

    base = where("BASE", "deny-paths")
    merge = where("MERGE_SLASHES", "deny-paths")
    decode = where("DECODE_AND_MERGE_SLASHES", "deny-paths")
    exclusion = [c for c in probed if c.policy == "path-exclusion" and c.mode != "NONE"]
    return [
        {"fact": "BASE: '//private' forms slip past a DENY on paths (on a backend that merges slashes)",
         "reproduced": verdict(base, any(b.closed_by == "MERGE_SLASHES" for c in base for b in c.bypasses))},
        {"fact": "BASE: '%2F' forms slip past a DENY on paths (on a backend that decodes %2F)",
         "reproduced": verdict(base, any(b.closed_by == "DECODE_AND_MERGE_SLASHES" for c in base for b in c.bypasses))},
        {"fact": "MERGE_SLASHES closes the '//' forms",
         "reproduced": verdict(merge, not any(b.closed_by == "MERGE_SLASHES" for c in merge for b in c.bypasses))},
        {"fact": "DECODE_AND_MERGE_SLASHES closes both: no bypass of the DENY on paths",
         "reproduced": verdict(decode, not any(c.bypasses for c in decode))},
        {"fact": "the FAQ's notRequestPrincipals + notPaths exclusion fails closed (BASE and stronger)",
         "reproduced": verdict(exclusion, not any(c.bypasses for c in exclusion))},
    ]  # fmt: skip


def token_attack_summary(results: Iterable[CaseResult]) -> dict[str, Any]:
    """Counts of the token-attack cases, and the attacks the mesh accepted (cases failed with a 2xx)."""
    mine = [r for r in results if r.scenario.name == TOKEN_ATTACK_SCENARIO]
    accepted = [
        {"case": r.case.name, "token": r.case.token.describe(), "observed": r.observed}
        for r in mine
        if r.accepted_attack
    ]
    count = {v: sum(1 for r in mine if r.verdict == v) for v in ("passed", "failed", "unsupported", "error")}
    return {"scenario": TOKEN_ATTACK_SCENARIO, "cases": len(mine), **count, "accepted": accepted}


def build(target: str, mesh: Mapping[str, Any], combinations: Sequence[Combination], corpus: Corpus | None,
          results: Iterable[CaseResult], unsupported: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The report document (plain data, ready for YAML)."""
    probed = [c for c in combinations if not c.unsupported]
    requests = sum(c.requests for c in probed)
    seconds = sum(c.seconds for c in probed)
    report: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suiteVersion": __version__,
        "target": target,
        "mesh": dict(mesh),
        "tokenAttacks": token_attack_summary(results),
    }
    probe: dict[str, Any] = {}
    if unsupported:
        probe["unsupported"] = unsupported
    if corpus is not None:
        probe["corpus"] = {"seed": corpus.seed, "fixed": corpus.fixed, "hypothesisMutations": corpus.mutations,
                           "hypothesisVersion": hypothesis_version(), "total": len(corpus.paths)}  # fmt: skip
    probe.update({
        "requests": requests, "seconds": round(seconds, 3),
        "requestsPerSecond": round(requests / seconds) if seconds else None,
        "bypasses": sum(len(c.bypasses) for c in probed),
        "unexplainedBypasses": sum(len(c.unexplained) for c in probed),
        "lines": [c.line for c in probed],
        "knownFacts": known_facts(combinations),
        "combinations": [c.as_dict() for c in combinations],
    })  # fmt: skip
    report["pathNormalizationProbe"] = probe
    return report


def write(report: Mapping[str, Any], directory: Path) -> Path:
    """Write ``security-report.yaml`` into ``directory`` (atomically); return its path."""
    return write_yaml(report, directory / FILE_NAME)
