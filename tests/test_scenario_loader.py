"""Scenario files: the built-in ones load; malformed ones are refused with file, line and what is wrong."""

import textwrap
from pathlib import Path

import pytest

from meshjwt.mesh import MeshInfo
from meshjwt.scenarios.loader import BUILTIN_DIR, ScenarioError, load_scenarios

HEADER = "apiVersion: meshjwt.conformance/v1alpha1\nkind: Scenario\n"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_scenarios_cover_the_faq():
    scenarios = load_scenarios([BUILTIN_DIR])
    cases = [c for s in scenarios for c in s.cases]
    assert len(cases) >= 60
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    sections = " ".join(s.section for s in scenarios)
    for section in ("FAQ 1", "FAQ 2", "FAQ 3", "FAQ 4", "FAQ 5"):
        assert section in sections
    algorithms = {c.token.alg for s in scenarios if s.name == "algorithms" for c in s.cases}
    assert len(algorithms) == 13


def test_matrix_expands_and_substitutes(tmp_path):
    path = write(tmp_path, HEADER + textwrap.dedent("""\
        name: m
        section: x
        cases:
          - name: v-${alg}
            matrix: {alg: [RS256, EdDSA]}
            features: ["JWT.${alg}"]
            token: {kind: valid, alg: "${alg}"}
            expect: {status: 200}
        """))
    (scenario,) = load_scenarios([path])
    assert [(c.name, c.token.alg, c.features) for c in scenario.cases] == [
        ("v-RS256", "RS256", ("JWT.RS256",)),
        ("v-EdDSA", "EdDSA", ("JWT.EdDSA",)),
    ]


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("name: x\nsection: s\ncases:\n  - name: a\n    expect: {status: 2000}\n", 7, "at cases/0/expect/status"),
        ("name: x\nsection: s\ncases:\n  - name: a\n    expect: {status: 200}\n    tokn: valid\n", 8,
         "'tokn' was unexpected"),  # the unexpected field's own line
        ("name: x\nsection: s\ncases:\n  - {name: a, expect: {status: 200}}\nbogus:\n  deep: 1\n", 7,
         "'bogus' was unexpected"),  # a top-level one too (not line 1)
        ("name: x\nsection: s\ncases: []\n", 5, "at cases"),
        ("name: x\nsection: s\ncases:\n  - name: a\n    expect: {status: 200\n", 8, "not valid YAML"),
        ("name: x\nsection: s\ncases:\n  - {name: a, token: frobbed, expect: {status: 200}}\n", 6,
         "token kind 'frobbed' unknown"),
        ("name: x\nsection: s\nmanifests:\n  - file: missing.yaml\ncases:\n  - {name: a, expect: {status: 200}}\n", 6,
         "missing.yaml' not found"),
        ("name: x\nsection: s\ncases:\n  - {name: a, expect: {status: 200}}\n  - {name: a, expect: {status: 200}}\n",
         7, "used twice"),
    ],
)  # fmt: skip
def test_malformed_file_is_refused_with_file_and_line(tmp_path, body, line, fragment):
    path = write(tmp_path, HEADER + body)
    with pytest.raises(ScenarioError) as error:
        load_scenarios([path])
    message = str(error.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_an_empty_scenario_file_is_refused(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError, match=f"^{path}: empty: no scenario in the file"):
        load_scenarios([tmp_path])


def test_missing_path_and_duplicate_names(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file or folder"):
        load_scenarios([tmp_path / "nope"])
    body = HEADER + "name: dup\nsection: s\ncases:\n  - {name: a, expect: {status: 200}}\n"
    write(tmp_path, body, "a.yaml")
    write(tmp_path, body, "b.yaml")
    with pytest.raises(ScenarioError, match="already used"):
        load_scenarios([tmp_path])


def test_expectation_overrides_follow_flavor_version_and_mode(tmp_path):
    path = write(tmp_path, HEADER + textwrap.dedent("""\
        name: o
        section: s
        cases:
          - name: a
            expect:
              status: 200
              overrides:
                - {when: {flavor: asm, versionBelow: "1.13"}, status: 401, reason: rsa only}
                - {when: {jwksFetchMode: envoy}, status: 503, reason: other}
        """))
    expect = load_scenarios([path])[0].cases[0].expect

    def status(flavor, version, mode="istiod"):
        return expect.for_mesh(MeshInfo("t", flavor, version, mode), mode).status

    assert status("asm", "1.12.4") == 401
    assert status("asm", "1.13") == 200
    assert status("istio", "1.12") == 200
    assert status("istio", "1.30", "envoy") == 503
