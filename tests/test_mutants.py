"""The mutation catalogue's rule: every Istio field and behaviour the local mesh translates or models has at least
one mutant that weakens it; the seam refuses an unknown mutant with one line naming the known ones."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from meshjwt.errors import ConfigError
from meshjwt.localmesh import mutation
from meshjwt.localmesh.translate import authn, authz

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE_FILE = ROOT / "mutants" / "catalogue.py"


@pytest.fixture(scope="module")
def catalogue() -> dict[str, mutation.Mutation]:
    return dict(mutation.catalogue_of(CATALOGUE_FILE))


def named(catalogue: dict[str, mutation.Mutation], word: str) -> list[str]:
    """Mutants whose ``breaks`` line names ``word`` (as a whole word)."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(word)}(?![\w])")
    return [name for name, m in catalogue.items() if pattern.search(m.breaks)]


def test_at_least_40_mutants_each_saying_what_it_breaks_and_where_istio_says_so(catalogue):
    assert len(catalogue) >= 40
    for name, mutant in catalogue.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name), name
        assert mutant.name == name and mutant.breaks and mutant.source, name
        assert "\n" not in mutant.breaks, f"{name}: one line"


def test_every_jwt_rule_field_the_local_mesh_translates_has_a_mutant(catalogue):
    missing = [f for f in sorted(authn.SUPPORTED_RULE_FIELDS) if not named(catalogue, f"jwtRules.{f}")]
    assert missing == []


def test_every_authorization_policy_field_and_not_form_and_condition_key_has_a_mutant(catalogue):
    source = authz._SOURCE_FIELDS - set(authz.REFUSED_SOURCE)
    fields = source | (authz._OPERATION_FIELDS - set(authz.REFUSED_OPERATION))
    keys = {"request.headers", "request.auth.claims", "request.auth.principal", *authz._JWT_CLAIM_KEYS}
    wanted = sorted(fields | keys | {"notValues", "DENY", "ALLOW", "AUDIT", "istio.io/dry-run", "selector"})
    assert [w for w in wanted if not named(catalogue, w)] == []
    assert named(catalogue, "case"), "the host matcher's case rule"


def test_every_path_normalization_mode_cors_and_header_removal_have_a_mutant(catalogue):
    modes = [m for m in authz._NORMALIZATION if m != "DEFAULT"]  # DEFAULT is BASE
    assert [m for m in modes if not named(catalogue, m)] == []
    assert named(catalogue, "bypass_cors_preflight") and named(catalogue, "OPTIONS")
    assert named(catalogue, "jwtRules.forwardOriginalToken")


def test_the_jwks_cache_and_behaviour_across_requests_have_mutants(catalogue):
    for behaviour in ("refresh", "retried", "outage", "substitute", "cache_duration"):
        assert [n for n, m in catalogue.items() if behaviour in m.breaks], behaviour
    for name in ("every-4th-token-accepted", "first-request-only-checked", "accepts-after-200-requests"):
        assert name in catalogue


def test_an_unknown_mutant_is_one_line_naming_the_known_ones(catalogue):
    with pytest.raises(ConfigError) as raised:
        mutation.load(f"{CATALOGUE_FILE}:no-such-mutant")
    text = str(raised.value)
    assert "\n" not in text and "unknown mutant 'no-such-mutant'" in text and "every-4th-token-accepted" in text
    with pytest.raises(ConfigError, match="FILE:NAME"):
        mutation.load("no-such-file.py:x")
    assert mutation.load(None) is mutation.REFERENCE


def test_the_harness_refuses_an_unknown_name_with_one_line(capsys):
    sys.path.insert(0, str(ROOT))
    from mutants.__main__ import main

    assert main(["no-such-mutant"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unknown mutant no-such-mutant; known: ") and "\n" not in err


def test_the_recorded_score_is_the_catalogues_size():
    from meshjwt.report.model import sharpness

    assert sharpness()["mutants"] == len(mutation.catalogue_of(CATALOGUE_FILE))


def test_only_a_failed_case_kills_and_an_envoy_refusal_is_said_but_is_no_kill():
    sys.path.insert(0, str(ROOT))
    from mutants.__main__ import Result, judge

    refused = "envoy rejected the generated lds config: Proto constraint validation failed"
    report = {"claims": [{"id": "ra-alone", "cases": [
        {"name": "valid-token", "verdict": "error", "detail": f"applying its resources failed: {refused}"},
        {"name": "no-token", "verdict": "passed"}]}]}  # fmt: skip
    killed_by, why = judge(report, "")
    assert killed_by is None and why is not None and why.startswith("ra-alone: envoy rejected")
    line = Result("m", killed_by, why, None, 1.0).line()
    assert line.startswith("mutant m: SURVIVED (Envoy refused its config: ra-alone: envoy rejected")
    report["claims"][0]["cases"][1]["verdict"] = "failed"
    assert judge(report, "")[0] == "ra-alone/no-token"
    assert Result("m", "ra-alone/no-token", None, None, 1.0).line() == "mutant m: killed by ra-alone/no-token"
