"""``meshjwt validate FILE...``: check users' scenario files and policy (Istio resource) files before a run.

A file with a ``kind: Scenario`` document goes through the scenario loader (schema, lines, ``file:``
references); any other YAML must hold Kubernetes resources. With the ``lint`` extra installed
(``kubernetes-validate``, ``cloudcoil-models-istio``) every resource is also checked against the Kubernetes
and Istio schemas (``meshjwt.kube.validate``); without it, that check is skipped and said so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TextIO

import yaml

from meshjwt.errors import ConfigError
from meshjwt.scenarios.loader import load_file, read_resources, scenario_files

SCHEMA_MODULES = ("kubernetes_validate", "cloudcoil.models.istio")


def schemas_available() -> bool:
    """Whether the Kubernetes and Istio schema packages (the ``lint`` extra) are installed."""
    try:
        return all(find_spec(name) is not None for name in SCHEMA_MODULES)
    except ModuleNotFoundError:  # a parent package (cloudcoil) is missing
        return False


def _is_scenario_file(path: Path) -> bool:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False  # read_resources names the problem and its line
    return any(isinstance(d, dict) and d.get("kind") == "Scenario" for d in docs)


def check_file(path: Path) -> list[str]:
    """Problems of one file found without the schema packages (empty: fine)."""
    try:
        if _is_scenario_file(path):
            load_file(path)
        elif not read_resources(path):
            return [f"{path}: empty: no Kubernetes resource in the file"]
    except ConfigError as exc:
        return [str(exc)]
    return []


def validate(paths: Iterable[str | Path], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check the files (folders: their YAML files); one line per problem on ``err``; 0 if none, 1, 2 bad usage."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        files = scenario_files(paths)
    except ConfigError as exc:
        print(f"meshjwt validate: {str(exc).replace(' (--scenarios)', '')}", file=err)
        return 2
    if not files:
        print("meshjwt validate: no YAML file in the paths given", file=err)
        return 2
    problems: list[str] = []
    sound: list[Path] = []  # files whose structure is fine: their resources go to the schema check
    for file in files:
        found = check_file(file)
        problems += found
        sound += [] if found else [file]
    note = ""
    if schemas_available():
        from meshjwt.kube.validate import validate_paths
        from meshjwt.kube.versions import DEFAULT_ISTIO, ISTIO_RELEASES

        problems += validate_paths(sound, ISTIO_RELEASES[DEFAULT_ISTIO].node_version.lstrip("v")) if sound else []
    else:
        note = " (Kubernetes/Istio schema check skipped: pip install 'mesh-jwt-conformance[lint]' for it)"
    for line in problems:
        print(line, file=err)
    print(f"meshjwt validate: {len(problems)} problem(s) in {len(files)} file(s){note}", file=out)
    return 1 if problems else 0


def main(argv: Sequence[str]) -> int:
    """Entry of ``meshjwt validate``."""
    return validate(argv)
