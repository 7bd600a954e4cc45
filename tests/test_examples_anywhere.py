"""Every example in README and examples/ works copied to an empty folder, run with the installed CLI (``meshjwt``
on PATH, as pip installs it): scenarios name built-in manifests with ``builtin:``, not a path into a checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshjwt.data import UnknownManifest, manifest_file, manifests_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))


def meshjwt() -> list[str]:
    found = shutil.which("meshjwt", path=str(Path(sys.executable).parent)) or shutil.which("meshjwt")
    return [found] if found else [sys.executable, "-m", "meshjwt"]


def test_builtin_names_a_packaged_manifest(tmp_path: Path) -> None:
    assert manifest_file("builtin:scenarios/ra-httpbin-inline.yaml", tmp_path) == (
        manifests_dir() / "scenarios" / "ra-httpbin-inline.yaml"
    ).resolve()
    with pytest.raises(UnknownManifest, match="builtin:scenarios/ra-httpbin-inline.yaml"):  # lists what there is
        manifest_file("builtin:scenarios/nope.yaml", tmp_path)
    with pytest.raises(UnknownManifest, match="no built-in manifest"):
        manifest_file("builtin:../../pyproject.toml", tmp_path)


def test_examples_name_no_path_outside_their_folder() -> None:
    for path in [*EXAMPLE_SCENARIOS, ROOT / "README.md"]:
        assert not re.search(r"file: *\.\./", path.read_text()), path


@pytest.mark.integration
@pytest.mark.parametrize("example", EXAMPLE_SCENARIOS, ids=lambda p: p.name)
def test_each_example_scenario_validates_and_runs_from_an_empty_folder(example: Path, tmp_path: Path) -> None:
    (tmp_path / "my-scenarios").mkdir()
    shutil.copy(example, tmp_path / "my-scenarios" / example.name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    checked = subprocess.run([*meshjwt(), "validate", "my-scenarios"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    run = subprocess.run([*meshjwt(), "run", "--target", "local", "--scenarios", "my-scenarios", "-q"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert (tmp_path / "reports" / "local" / "conformance-report.yaml").is_file()


@pytest.mark.integration
def test_the_example_policies_validate_from_an_empty_folder(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "policies", tmp_path / "my-policies")
    checked = subprocess.run([*meshjwt(), "validate", "my-policies"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
