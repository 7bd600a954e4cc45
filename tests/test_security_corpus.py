"""The probe's corpus (deterministic, sendable, big enough) and how bypasses are classed and reported."""

import re

import pytest

from meshjwt.mesh import Response
from meshjwt.report.writers import to_html
from meshjwt.security import corpus
from meshjwt.security.probe import MODES, Bypass, Combination, closed_by, explained, normalization_control
from meshjwt.security.pytest_plugin import parse_modes, summary_lines
from meshjwt.security.report import build, known_facts

LINE = re.compile(r"^probe (NONE|BASE|MERGE_SLASHES|DECODE_AND_MERGE_SLASHES) \S+ \S+: \d+ requests, \d+ bypasses"
                  r"(; controls: [^;]+)?$")


def test_corpus_is_deterministic_sendable_and_large():
    first, again = corpus.build(seed=7, mutation_count=30), corpus.build(seed=7, mutation_count=30)
    assert first.paths == again.paths and first.seed == 7
    assert len(first.paths) >= 500 and len(set(first.paths)) == len(first.paths)
    assert 0 < first.mutations <= 30 and corpus.check(first.paths) == []
    other = corpus.build(seed=8, mutation_count=30)
    assert other.paths[other.fixed :] != first.paths[first.fixed :]


def test_corpus_covers_the_attack_families():
    paths = corpus.fixed_paths()
    for needle in ("//private/secret.html", "/private%2Fsecret.html", "/private%5Csecret.html", "%252f", "%c0%af",
                   "/PRIVATE/secret.html", "/private/secret.html;x=1", "/public/../private/secret.html",
                   "%ef%bc%8f", "/%70rivate/secret.html"):  # fmt: skip
        assert any(needle in p for p in paths), needle


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([("encode", 1, "")], "/%70rivate/secret.html"),
        ([("encode-lower", 8, "")], "/private%2fsecret.html"),
        ([("double-encode", 8, "")], "/private%252Fsecret.html"),
        ([("overlong", 0, "")], "/%c0%afprivate/secret.html"),
        ([("case", 1, "")], "/Private/secret.html"),
        ([("insert", 8, "/")], "/private//secret.html"),
        ([("suffix", 0, ";x")], "/private/secret.html;x"),
        ([("prefix", 0, "x")], "/x/private/secret.html"),
        ([("delete", 0, "")], "/private/secret.html"),  # the leading slash comes back
    ],
)
def test_mutate(ops, expected):
    assert corpus.mutate("/private/secret.html", ops) == expected


@pytest.mark.parametrize(
    ("path", "closer"),
    [
        ("//private/secret.html", "MERGE_SLASHES"),
        ("/\\private/secret.html", "MERGE_SLASHES"),
        ("/private%2Fsecret.html", "DECODE_AND_MERGE_SLASHES"),
        ("/private%5csecret.html", "DECODE_AND_MERGE_SLASHES"),
        ("/./private/secret.html", "BASE"),
        ("/private/secret.html?a=//", "BASE"),
    ],
)
def test_closed_by(path, closer):
    assert closed_by(path) == closer
    assert [explained(mode, path) for mode in MODES] == [MODES.index(m) < MODES.index(closer) for m in MODES]


def _combo(mode, policy, *paths, backend="nginx"):
    result = Combination(mode, backend, policy, requests=600)
    result.bypasses = [Bypass(f"GET {p} HTTP/1.1", 200, closed_by(p), explained(mode, p)) for p in paths]
    return result


def test_known_facts_and_lines():
    combos = [_combo("BASE", "deny-paths", "//private/secret.html", "/private%2Fsecret.html"),
              _combo("MERGE_SLASHES", "deny-paths", "/private%2Fsecret.html"),
              _combo("DECODE_AND_MERGE_SLASHES", "deny-paths"), _combo("BASE", "path-exclusion")]  # fmt: skip
    assert [f["reproduced"] for f in known_facts(combos)] == [True, True, True, True, True]
    combos.append(_combo("DECODE_AND_MERGE_SLASHES", "deny-paths", "/x", backend="apache2"))
    assert known_facts(combos)[3]["reproduced"] is False and combos[-1].unexplained
    assert known_facts([])[0]["reproduced"] is None
    lines = summary_lines(combos)
    assert lines[0] == "probe BASE nginx deny-paths: 600 requests, 2 bypasses"
    combos[0].controls = ["secret served directly", "private path 403 RBAC", "dot segments normalized"]
    assert summary_lines(combos)[0] == ("probe BASE nginx deny-paths: 600 requests, 2 bypasses; controls: secret "
                                        "served directly, private path 403 RBAC, dot segments normalized")
    assert all(LINE.match(line) for line in lines)


def test_report_and_html_section_name_every_bypass():
    combos = [_combo("BASE", "deny-paths", "//private/<b>secret.html"),
              Combination("BASE", "apache2", "deny-paths", unsupported="apache2 is not installed")]  # fmt: skip
    document = build("local", {"pathNormalization": "BASE"}, combos, corpus.Corpus(("/a",), 1, 0), [])
    probe = document["pathNormalizationProbe"]
    assert probe["bypasses"] == 1 and probe["combinations"][0]["bypasses"][0]["request"].startswith("GET //private")
    assert probe["combinations"][1] == {"mode": "BASE", "backend": "apache2", "policy": "deny-paths",
                                        "unsupported": "apache2 is not installed"}  # fmt: skip
    html = to_html({"apiVersion": "v", "kind": "k", "target": "local", "result": "success", "date": "d",
                    "suiteVersion": "0", "mesh": {"flavor": "istio", "version": "1", "jwksFetchMode": "istiod"},
                    "implementation": {}, "timeouts": {}, "statistics": {}, "features": {"supported": [],
                    "unsupported": []}, "howToReproduce": "x", "claims": [], "security": document})  # fmt: skip
    assert "Security qualification" in html and "GET //private/&lt;b&gt;secret.html" in html
    assert "apache2 is not installed" in html


def test_parse_modes():
    assert parse_modes(None) == MODES
    assert parse_modes("base, decode_and_merge_slashes") == ("BASE", "DECODE_AND_MERGE_SLASHES")
    with pytest.raises(pytest.UsageError, match="unknown mode FOO"):
        parse_modes("BASE,foo")


@pytest.mark.parametrize(("policy", "status", "body", "mode", "shown"), [
    ("deny-paths", 403, "RBAC: access denied", "BASE", "dot segments normalized"),
    ("deny-paths", 200, "SECRET", "NONE", "dot segments kept"),
    ("deny-paths", 403, "RBAC: access denied", "NONE", None),  # NONE claimed, yet the mesh normalizes
    ("deny-paths", 403, "Forbidden", "BASE", None),  # a 403 that is not Envoy's RBAC denial
    ("path-exclusion", 200, "public page", "MERGE_SLASHES", "dot segments normalized"),
    ("path-exclusion", 403, "RBAC: access denied", "NONE", "dot segments kept"),
    ("path-exclusion", 200, "public page", "NONE", None),
])
def test_the_normalization_control_makes_none_falsifiable(policy, status, body, mode, shown):
    """Issue 17: NONE 'explained' every bypass whatever the mesh did; now the mode in force is checked first."""
    said = normalization_control(Response(status, {}, body), mode, policy, "SECRET")
    assert said == shown if shown else said.startswith("control failed")
