"""Read scenario files (YAML, one or more documents each), validate them, and build Scenario records.

Every problem is reported before anything is applied, as ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from meshjwt.data import UnknownManifest, builtin_scenarios_dir, manifest_file
from meshjwt.errors import ConfigError
from meshjwt.mesh import Request
from meshjwt.placeholders import substitute
from meshjwt.scenarios.model import Case, Expectation, Override, Scenario, TokenSpec, When
from meshjwt.tokens import TokenFactory

BUILTIN_DIR = builtin_scenarios_dir()
#: libyaml's safe loader where PyYAML has it (its wheels do): ~5x faster than the pure-Python one
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, *, nodes: bool = False) -> tuple[list[Any], list[yaml.Node]]:
    """The documents of ``text`` (and, with ``nodes``, their nodes, for line numbers), parsed by libyaml; on an
    error, the pure-Python parser's error is raised instead: its line and wording are the ones users know."""
    try:
        composed = list(yaml.compose_all(text, Loader=SAFE_LOADER)) if nodes else []
        return list(yaml.load_all(text, Loader=SAFE_LOADER)), composed
    except yaml.YAMLError:
        list(yaml.safe_load_all(text))  # raises with the pure-Python parser's message
        raise


class ScenarioError(ConfigError):
    """A scenario file is malformed; the message starts with ``file:line``."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON schema of a scenario document."""
    return json.loads(resources.files("meshjwt.scenarios").joinpath("schema.json").read_text())


def line_of(node: yaml.Node, path: Iterable[Any]) -> int:
    """1-based line of the YAML node at ``path`` (the deepest node that exists)."""
    for step in path:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
        else:
            child = None
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def key_line(node: yaml.Node, path: Iterable[Any], keys: Iterable[str]) -> int | None:
    """1-based line of the first of ``keys`` in the mapping at ``path`` (None if it is not there)."""
    for step in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
        if child is None:
            return None
        node = child
    if isinstance(node, yaml.MappingNode):
        wanted = set(keys)
        return next((k.start_mark.line + 1 for k, _ in node.value if k.value in wanted), None)
    return None


def error_line(node: yaml.Node, error: jsonschema.ValidationError) -> int:
    """The line to blame: an unexpected field's own line, else the deepest node on the error's path."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        line = key_line(node, error.absolute_path, [k for k in error.instance if k not in known])
        if line is not None:
            return line
    return line_of(node, error.absolute_path)


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.yaml``/``.yml`` files named, or found (sorted) in the folders named."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            raise ScenarioError(f"{path}: no such scenario file or folder (--scenarios)")
    return files


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario]:
    """Load and validate every scenario in ``paths``; scenario names must be unique."""
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for file in scenario_files(paths):
        for scenario in load_file(file):
            if scenario.name in seen:
                raise ScenarioError(f"{file}: scenario name {scenario.name!r} already used in {seen[scenario.name]}")
            seen[scenario.name] = str(file)
            scenarios.append(scenario)
    return scenarios


def load_file(file: Path) -> list[Scenario]:
    """All scenarios of one YAML file (documents separated by ``---``)."""
    text = file.read_text()
    try:
        docs, nodes = parse_yaml(text, nodes=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise ScenarioError(f"{file}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    scenarios = []
    for node, doc in zip(nodes, docs, strict=True):
        if doc is None:
            continue
        validator = jsonschema.Draft202012Validator(schema())
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            error = jsonschema.exceptions.best_match(errors)
            where = "/".join(str(p) for p in error.absolute_path) or "(document)"
            raise ScenarioError(f"{file}:{error_line(node, error)}: at {where}: {error.message}")
        scenarios.append(_build(file, node, doc))
    if not scenarios:
        raise ScenarioError(f"{file}: empty: no scenario in the file (a scenario file needs at least one document)")
    return scenarios


def _resources(file: Path, node: yaml.Node, doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for i, item in enumerate(doc.get("manifests", [])):
        if "inline" in item:
            out.append(item["inline"])
            continue
        line = line_of(node, ["manifests", i, "file"])
        try:
            target = manifest_file(item["file"], file.parent)
        except UnknownManifest as exc:
            raise ScenarioError(f"{file}:{line}: manifests[{i}].file {exc}") from None
        try:
            out += read_resources(target)
        except ConfigError as exc:
            raise ScenarioError(f"{file}:{line}: manifests[{i}].file: {exc}") from None
    return out


def read_resources(path: Path) -> list[dict[str, Any]]:
    """The Kubernetes resources of a YAML file (``kind: List`` expanded); ``path:line: why`` if it has other things."""
    try:
        documents = [d for d in parse_yaml(path.read_text(encoding="utf-8"))[0] if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    resources: list[dict[str, Any]] = []
    for index, document in enumerate(documents, start=1):
        items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else None
        for resource in items if isinstance(items, list) else [document]:
            if not isinstance(resource, dict) or not {"apiVersion", "kind", "metadata"} <= set(resource):
                raise ConfigError(f"{path}: document {index} is not a Kubernetes resource "
                                    "(apiVersion, kind and metadata are needed)")  # fmt: skip
            resources.append(resource)
    return resources


def _token(spec: Any) -> TokenSpec:
    if spec in (None, "none"):
        return TokenSpec()
    if isinstance(spec, str):
        return TokenSpec(kind=spec)
    where = spec.get("in", {})
    return TokenSpec(
        kind=None if "literal" in spec else spec.get("kind", "valid"),
        alg=spec.get("alg", "RS256"),
        claims=spec.get("claims", {}),
        literal=spec.get("literal"),
        header=where.get("header", "Authorization"),
        prefix=where.get("prefix", "Bearer " if "header" not in where else ""),
        param=where.get("param"),
        jose=spec.get("joseHeader", {}),
    )


def _expectation(spec: Mapping[str, Any]) -> Expectation:
    """An expectation and its overrides, typed at load (the schema has checked their fields)."""
    overrides = tuple(Override(_when(o["when"]), _expectation({k: v for k, v in o.items() if k != "when"}))
                      for o in spec.get("overrides", ()))  # fmt: skip
    return Expectation(
        status=spec["status"], body=spec.get("body"), body_contains=spec.get("bodyContains"),
        body_lacks=spec.get("bodyNotContains"),
        headers=spec.get("headers", {}), reason=spec.get("reason"), overrides=overrides,
    )  # fmt: skip


def _when(spec: Mapping[str, Any]) -> When:
    return When(flavor=spec.get("flavor"), version_below=spec.get("versionBelow"),
                version_at_least=spec.get("versionAtLeast"), jwks_fetch_mode=spec.get("jwksFetchMode"))  # fmt: skip


def _expand(case: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A case with ``matrix`` becomes one case per combination, ``${key}`` replaced by the value."""
    matrix = case.get("matrix")
    if not matrix:
        return [case]
    body = {k: v for k, v in case.items() if k != "matrix"}
    keys = list(matrix)
    return [
        substitute(body, {k: str(v) for k, v in zip(keys, combo, strict=True)}, where="matrix", strict=False)
        for combo in itertools.product(*(matrix[k] for k in keys))
    ]


def _build(file: Path, node: yaml.Node, doc: Mapping[str, Any]) -> Scenario:
    defaults = doc.get("defaults", {})
    cases: list[Case] = []
    names: set[str] = set()
    for index, raw_case in enumerate(doc["cases"]):
        for case in _expand(raw_case):
            line = line_of(node, ["cases", index])
            if case["name"] in names:
                raise ScenarioError(f"{file}:{line}: case name {case['name']!r} is used twice in {doc['name']}")
            names.add(case["name"])
            token = _token(case.get("token"))
            extra_tokens = tuple(_token(t) for t in case.get("extraTokens", ()))
            for spec in (token, *extra_tokens):
                if spec.kind is not None and spec.kind not in TokenFactory.KINDS:
                    raise ScenarioError(f"{file}:{line}: token kind {spec.kind!r} unknown; "
                                        f"choose one of {', '.join(TokenFactory.KINDS)}")  # fmt: skip
                if spec.jose and spec.kind not in TokenFactory.JOSE_KINDS:
                    raise ScenarioError(f"{file}:{line}: token kind {spec.kind!r} takes no joseHeader; "
                                        f"these do: {', '.join(sorted(TokenFactory.JOSE_KINDS))}")  # fmt: skip
            request = {**defaults, **case.get("request", {})}
            request["headers"] = {**defaults.get("headers", {}), **case.get("request", {}).get("headers", {})}
            cases.append(Case(
                scenario=doc["name"], name=case["name"], request=Request(**request), token=token,
                expect=_expectation(case["expect"]), features=tuple(case.get("features", ())),
                description=case.get("description", ""), extra_tokens=extra_tokens,
                actions=tuple(case.get("actions", ())),
            ))  # fmt: skip
    return Scenario(
        name=doc["name"], section=doc["section"], source=str(file), features=tuple(doc.get("features", ())),
        manifests=tuple(_resources(file, node, doc)), cases=tuple(cases), description=doc.get("description", ""),
        jwks_fetch_mode=doc.get("jwksFetchMode"), before=tuple(doc.get("before", ())),
        expect_apply=doc.get("expectApply"), path_normalization=doc.get("pathNormalization"),
    )  # fmt: skip
