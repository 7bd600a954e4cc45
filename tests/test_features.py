"""Named features and option precedence: defaults < --options-file < the command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from meshjwt import features
from meshjwt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_algorithm_has_a_feature():
    assert {f"JWT.{a}" for a in ("RS256", "PS384", "ES512", "HS256", "EdDSA")} <= set(features.FEATURES)


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


def run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "suites", "-q", "-rs", "--reports-dir", str(tmp_path / "r"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_options_file_and_command_line_precedence(tmp_path):
    options = tmp_path / "options.yaml"
    options.write_text("exempt-features: [JWT.EdDSA]\ntimeout_converge: 7\nmesh-version: '1.7'\n")
    result = run(tmp_path, "--options-file", str(options), "-k", "algorithms")
    assert result.returncode == 0, result.stdout
    # file: EdDSA exempt; version 1.7 → the table drops all non-RSA algorithms (14 of 26 cases)
    assert "12 passed, 14 skipped" in result.stdout
    assert "JWT.EdDSA: exempted with --exempt-features" in result.stdout
    # the command line wins over the file
    result = run(tmp_path, "--options-file", str(options), "--mesh-version", "1.30", "-k", "algorithms")
    assert "24 passed, 2 skipped" in result.stdout, result.stdout


def test_options_file_errors_are_one_line(tmp_path):
    options = tmp_path / "options.yaml"
    options.write_text("no-such-option: 1\n")
    result = run(tmp_path, "--options-file", str(options))
    assert result.returncode == 4
    assert f"ERROR: --options-file {options}: unknown option 'no-such-option'" in result.stderr
