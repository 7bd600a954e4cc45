"""Packaging: the suite's plugin is scoped to the suites, and the suites ship inside the package."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from meshjwt import data

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def test_every_package_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "meshjwt").rglob("__init__.py")}
    mapped = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    assert on_disk | set(mapped) == set(config["packages"])
    assert all((folder / "__init__.py").is_file() for folder in mapped.values())
    assert not any(name.split(".")[0] == "fixtures" for name in config["packages"])


def test_builtin_folders_resolve_to_the_checkout_in_an_editable_install():
    assert data.suites_dir() == ROOT / "suites"
    assert data.builtin_scenarios_dir() == ROOT / "suites" / "scenarios"
    assert data.manifests_dir() == ROOT / "manifests"


def test_without_an_install_the_checkout_is_used(monkeypatch):
    monkeypatch.setattr(data, "find_spec", lambda name: None)
    assert data.suites_dir() == ROOT / "suites"
    assert data.manifests_dir() == ROOT / "manifests"


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed here")
def test_the_wheel_carries_suites_scenarios_and_manifests(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".tox", ".git", "reports", "node_modules", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    scenarios = {f"meshjwt/suites/scenarios/{p.name}" for p in (ROOT / "suites" / "scenarios").glob("*.yaml")}
    manifests = {f"meshjwt/manifests/{p.relative_to(ROOT / 'manifests')}" for p in (ROOT / "manifests").rglob("*.yaml")}
    assert {"meshjwt/suites/conftest.py", "meshjwt/suites/test_conformance.py", "meshjwt/run.ini"} <= names
    assert scenarios and scenarios <= names
    assert manifests and manifests <= names
    assert not any(name.startswith(("fixtures/", "suites/", "manifests/", "tests/")) for name in names)


def _project(pytester: pytest.Pytester) -> None:
    """A copy of the repository's pytest wiring: root conftest, the suites' conftest, one unit test."""
    pytester.makepyprojecttoml((ROOT / "pyproject.toml").read_text())
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")
    (pytester.path / "suites").mkdir()
    shutil.copy(ROOT / "suites" / "conftest.py", pytester.path / "suites" / "conftest.py")
    (pytester.path / "suites" / "test_noop.py").write_text("def test_suite(settings):\n    assert settings\n")
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_unit.py").write_text(
        "def test_unit(pytestconfig):\n"
        "    assert not pytestconfig.pluginmanager.has_plugin('meshjwt.pytest_plugin')\n"
    )


def test_unit_tests_do_not_load_the_suite_plugin_nor_touch_reports(pytester: pytest.Pytester):
    _project(pytester)
    pytester.runpytest("tests").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    result = pytester.runpytest("tests", "--target", "local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the suite's options exist only for the suites


def test_the_suites_load_the_plugin_and_write_their_junit(pytester: pytest.Pytester):
    _project(pytester)
    pytester.runpytest("suites", "--reports-dir", "out").assert_outcomes(passed=1)
    assert (pytester.path / "out" / "local" / "junit.xml").is_file()
