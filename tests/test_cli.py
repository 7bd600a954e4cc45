"""The ``meshjwt`` command: ``run`` (the packaged suites in any folder) and ``validate`` (users' files)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meshjwt import data
from meshjwt.__main__ import main
from meshjwt.kube import validate as kube_validate
from meshjwt.run import pytest_args

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_HEAD = "apiVersion: meshjwt.conformance/v1alpha1\nkind: Scenario\nname: s\nsection: t\n"
ONE_CASE = "cases: [{name: c, expect: {status: 200}}]\n"


def test_run_passes_the_packaged_suites_and_ignores_the_folders_pytest_config(tmp_path):
    args = pytest_args(["--target", "kind", "-k", "x"], cwd=tmp_path)
    assert args[0] == str(data.suites_dir())
    assert args[1] == "-c" and "no:cacheprovider" in Path(args[2]).read_text()
    assert args[3:] == [f"--rootdir={tmp_path}", "--target", "kind", "-k", "x"]


@pytest.mark.integration
def test_run_in_an_empty_folder_writes_reports_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --this-option-does-not-exist\n")  # not ours: ignored
    assert main(["run", "--target", "local", "-q", "-k", "products-0-no-token"]) == 0
    suite = ET.parse(tmp_path / "reports" / "local" / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    assert (tmp_path / "reports" / "local" / "conformance-report.yaml").is_file()


def test_run_refuses_a_bad_option_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--target", "nope"]) == pytest.ExitCode.USAGE_ERROR
    assert "unknown --target 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_validate_accepts_the_repositorys_files(capsys):
    assert main(["validate", str(ROOT / "examples"), str(ROOT / "suites" / "scenarios")]) == 0
    assert " 0 problem(s) in " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("empty.yaml", "", "empty.yaml: empty: no Kubernetes resource in the file"),
        ("bad.yaml", "a: [", "bad.yaml:1: not valid YAML"),
        ("list.yaml", "- 1\n", "list.yaml:1: document 1 is not a Kubernetes resource"),
        ("s.yaml", SCENARIO_HEAD + "cases:\n  - {name: c, expect: {status: 9}}\n", "s.yaml:6: at cases/0"),
        ("ref.yaml", SCENARIO_HEAD + "manifests: [{file: nope.yaml}]\n" + ONE_CASE, "ref.yaml:5: manifests[0].file"),
    ],
)
def test_validate_names_file_and_line(tmp_path, capsys, name, text, expected):
    (tmp_path / name).write_text(text)
    assert main(["validate", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err and err[0].startswith(str(tmp_path)) and expected in err[0], err


def test_validate_checks_istios_schema_with_the_base_install(tmp_path, capsys, monkeypatch):
    """The Istio schemas ship with the package: no lint extra needed (cloudcoil is never asked)."""
    monkeypatch.setattr(kube_validate, "generated_istio_schema", lambda *a: pytest.fail("cloudcoil used"))
    kube_validate.istio_schema.cache_clear()
    policy = tmp_path / "p.yaml"
    policy.write_text("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
                      "spec:\n  action: ALOW\n")  # fmt: skip
    assert main(["validate", str(policy)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"{policy}:5: spec.action: 'ALOW' is not one of "
                                                    "['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']"]  # fmt: skip


def test_validate_bad_usage(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing")]) == 2
    missing = tmp_path / "missing"
    assert capsys.readouterr().err.strip() == f"meshjwt validate: {missing}: no such scenario file or folder"
    assert main(["validate", str(tmp_path)]) == 2
