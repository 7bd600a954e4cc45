"""Named features and option precedence: defaults < --options-file < the command line."""

from pathlib import Path

import pytest

from meshjwt import features
from meshjwt.errors import ConfigError
from meshjwt.scenarios.loader import BUILTIN_DIR, load_scenarios

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def test_the_builtin_scenarios_and_the_table_use_exactly_the_named_features():
    """No typo in a scenario's features (it would silently skip), and no named feature nobody uses."""
    scenarios = load_scenarios([BUILTIN_DIR])
    declared = {f for s in scenarios for f in (*s.features, *(f for c in s.cases for f in c.features))}
    in_table = {f for row in features.TABLE for f in row.features}
    assert declared <= set(features.FEATURES), sorted(declared - set(features.FEATURES))
    assert set(features.FEATURES) == declared | in_table, sorted(set(features.FEATURES) - declared - in_table)


@pytest.mark.parametrize(
    ("case_features", "flavor", "version", "supported", "exempt", "expected"),
    [
        (["JWT.ES256"], "istio", "1.30", None, frozenset(), set()),
        (["JWT.ES256"], "istio", "1.7", None, frozenset(), {"JWT.ES256"}),  # the table
        (["JWT.RS256"], "istio", "1.7", None, frozenset(), set()),
        (["JWT.ES256"], "asm", "1.12", None, frozenset(), set()),  # asserted by expectations, not skipped
        (["JWKS.EnvoyFetch"], "istio", "1.30", None, frozenset({"JWKS.EnvoyFetch"}), {"JWKS.EnvoyFetch"}),
        (["Ingress", "JWT.RS256"], "istio", "1.30", frozenset({"JWT.RS256"}), frozenset(), {"Ingress"}),
    ],
)
def test_unsupported_features(case_features, flavor, version, supported, exempt, expected):
    assert set(features.unsupported(case_features, flavor, version, supported, exempt)) == expected


def test_names_are_checked_and_lists_parsed():
    assert features.parse_list(["a,b", " c "]) == {"a", "b", "c"}
    assert features.parse_list(None) is None
    features.check_names(["Custom.Thing"], "--exempt-features", declared=["Custom.Thing"])
    with pytest.raises(ConfigError, match="--exempt-features: unknown feature 'JWT.RS257'"):
        features.check_names(["JWT.RS257"], "--exempt-features")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The suites in process (pytester), quiet, with skip reasons."""
    return pytester.runpytest(str(ROOT / "suites"), "-q", "-rs", "--reports-dir", "r", *args)


@pytest.mark.integration
def test_options_file_and_command_line_precedence(pytester, tmp_path):
    options = tmp_path / "options.yaml"
    options.write_text("exempt-features: [JWT.EdDSA]\ntimeout_converge: 7\nmesh-version: '1.7'\n")
    result = run(pytester, "--options-file", str(options), "-k", "algorithms")
    # file: EdDSA exempt; version 1.7 → the table drops all non-RSA algorithms (14 of 26 cases)
    result.assert_outcomes(passed=12, skipped=14)
    assert "JWT.EdDSA: exempted with --exempt-features" in result.stdout.str()
    # the command line wins over the file
    result = run(pytester, "--options-file", str(options), "--mesh-version", "1.30", "-k", "algorithms")
    result.assert_outcomes(passed=24, skipped=2)


def test_options_file_errors_are_one_line(pytester, tmp_path):
    options = tmp_path / "options.yaml"
    options.write_text("no-such-option: 1\n")
    result = run(pytester, "--options-file", str(options))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --options-file {options}: unknown option 'no-such-option'" in result.stderr.str()
