"""``meshjwt validate FILE...``: check users' scenario files and policy (Istio resource) files before a run.

A file with a ``kind: Scenario`` document goes through the scenario loader (schema, lines, ``file:`` references).
Any other YAML must hold Kubernetes resources (policies), each checked, with the base install, against Istio's
schema (shipped with the package: errors and unknown fields) and by the local reference mesh (the fields it cannot
run, as the playground and ``--target local`` refuse them). One line per problem: ``file:line: field: why``.
Other Kubernetes resources are checked against the Kubernetes schema with the ``lint`` extra
(``kubernetes-validate``); without it, that check is skipped and said so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TextIO

import jsonschema
import yaml

from meshjwt.errors import ConfigError
from meshjwt.kube.validate import (
    ISTIO_GROUPS,
    closest_errors,
    describe,
    fill,
    istio_schema,
    resources_of,
    validate_resource,
)
from meshjwt.kube.versions import DEFAULT_ISTIO, ISTIO_RELEASES
from meshjwt.localmesh.dry_run import field_of, refusals
from meshjwt.scenarios.loader import error_line, key_line, line_of, load_file, parse_yaml, scenario_files

KUBE_SCHEMA_MODULE = "kubernetes_validate"
#: the Kubernetes version resources are checked against: the one the default Istio release runs on
KUBE_VERSION = ISTIO_RELEASES[DEFAULT_ISTIO].node_version.lstrip("v")


def kube_schemas_available() -> bool:
    """Whether the Kubernetes schema package (the ``lint`` extra) is installed."""
    return find_spec(KUBE_SCHEMA_MODULE) is not None


@dataclass(frozen=True)
class Located:
    """One resource of a policy file, with where it is (its document's node and the path to it there)."""

    file: Path
    node: yaml.Node
    prefix: tuple[Any, ...]
    resource: dict[str, Any]

    def line(self, field: Sequence[Any] = ()) -> int:
        """The line of ``field`` (its key's own line when it is there), else of its deepest existing parent."""
        path = [*self.prefix, *field]
        if path and isinstance(path[-1], str):
            found = key_line(self.node, path[:-1], [path[-1]])
            if found is not None:
                return found
        return line_of(self.node, path)


def steps(field: str) -> list[Any]:
    """``spec.rules[0].from`` → ``["spec", "rules", 0, "from"]``."""
    out: list[Any] = []
    for part in field.replace("[", ".[").split("."):
        if part:
            out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def dotted(path: Iterable[Any]) -> str:
    """``["spec", "rules", 0]`` → ``spec.rules[0]``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "<resource>"


def _is_scenario_file(path: Path) -> bool:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False  # the policy reader names the problem and its line
    return any(isinstance(d, dict) and d.get("kind") == "Scenario" for d in docs)


def policy_resources(path: Path) -> tuple[list[Located], list[str]]:
    """The resources of a policy file (``kind: List`` expanded, ``${VAR}`` given plausible values) and the lines of
    what is not a resource."""
    try:
        documents, nodes = parse_yaml(path.read_text(encoding="utf-8"), nodes=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [f"{path}:{mark.line + 1 if mark else 1}: not valid YAML: {getattr(exc, 'problem', exc)}"]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read it: {exc}"]
    found: list[Located] = []
    problems: list[str] = []
    for number, (document, node) in enumerate(zip((d for d in documents if d is not None), nodes, strict=False), 1):
        items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else None
        entries = [(("items", i), r) for i, r in enumerate(items)] if isinstance(items, list) else [((), document)]
        for prefix, resource in entries:
            where = Located(path, node, prefix, {})
            if not isinstance(resource, dict) or not {"apiVersion", "kind", "metadata"} <= set(resource):
                problems.append(f"{path}:{where.line()}: document {number} is not a Kubernetes resource "
                                "(apiVersion, kind and metadata are needed)")  # fmt: skip
                continue
            found.append(Located(path, node, prefix, fill(resource)))
    if not found and not problems:
        problems.append(f"{path}: empty: no Kubernetes resource in the file")
    return found, problems


def schema_problems(item: Located) -> list[str]:
    """Istio schema errors and unknown fields of one Istio resource (other kinds: :func:`kube_problems`)."""
    api, kind = str(item.resource["apiVersion"]), str(item.resource["kind"])
    schema = istio_schema(api, kind)
    if schema is None:
        return [f"{item.file}:{item.line(['kind'])}: kind: unknown Istio resource {api} {kind} "
                "(no Istio schema for it: check apiVersion and kind)"]  # fmt: skip
    out = []
    errors = jsonschema.Draft202012Validator(schema).iter_errors(item.resource)
    for error in [leaf for top in sorted(errors, key=lambda e: e.path) for leaf in closest_errors(top)]:
        path = list(error.absolute_path)
        why = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            unknown = [k for k in error.instance if k not in known]
            if unknown:
                path, why = [*path, unknown[0]], f"unknown field: Istio's {kind} has no {unknown[0]!r} here"
        line = error_line(item.node, error) if not item.prefix else item.line(path)
        out.append(f"{item.file}:{line}: {dotted(path)}: {why if len(why) <= 160 else why[:157] + '...'}")
    return out


def kube_problems(item: Located, kube_version: str) -> list[str]:
    """Kubernetes schema errors of a resource outside Istio's groups (needs the ``lint`` extra)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(item.resource), kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{item.file}:{item.line(list(exc.path))}: {dotted(exc.path)}: {exc.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return [f"{item.file}:{item.line(['kind'])}: kind: no Kubernetes schema: {exc}"]
    return []


def local_mesh_problems(items: Sequence[Located]) -> list[str]:
    """What the local reference mesh refuses of these resources, applied together (as the playground applies a
    folder): ``file:line: field: why``."""
    out = []
    for index, message in refusals([item.resource for item in items]):
        item = items[index] if index is not None else None
        field = field_of(message)
        if item is None:
            out.append(f"{items[0].file}:1: {field or '<resources>'}: {message}")
            continue
        head, _, tail = message.partition(field) if field else (message, "", "")
        why = f"{head.rstrip(': ')}: {tail.strip().removeprefix('is ').lstrip(': ')}" if field else message
        out.append(f"{item.file}:{item.line(steps(field) if field else [])}: {field or '<resource>'}: {why}")
    return out


def check_policies(files: Sequence[Path], kube_version: str) -> tuple[list[str], bool]:
    """Problems of policy files, and whether some Kubernetes resources went unchecked (no ``lint`` extra)."""
    problems: list[str] = []
    items: list[Located] = []
    unchecked = False
    for file in files:
        found, bad = policy_resources(file)
        problems += bad
        for item in found:
            if str(item.resource["apiVersion"]).split("/", 1)[0] in ISTIO_GROUPS:
                problems += schema_problems(item)
            elif kube_schemas_available():
                problems += kube_problems(item, kube_version)
            else:
                unchecked = True
        items += found
    if items:  # a field the schema already refused is not said twice
        said = {line.split(": ", 2)[0] + ": " + line.split(": ", 2)[1] for line in problems if line.count(": ") >= 2}
        problems += [line for line in local_mesh_problems(items) if ": ".join(line.split(": ", 2)[:2]) not in said]
    return problems, unchecked


def check_scenario_resources(files: Sequence[Path], kube_version: str) -> tuple[list[str], bool]:
    """Schema problems of the resources scenario files apply, and whether some went unchecked (no ``lint`` extra)."""
    problems: list[str] = []
    unchecked = False
    for file in files:
        for where, resource in resources_of(file):
            if isinstance(resource, dict) and "__error__" in resource:
                problems.append(f"{file}: {where}: {resource['__error__']}")
            elif not isinstance(resource, dict):
                problems.append(f"{file}: {where}: not a mapping")
            elif str(resource.get("apiVersion", "")).split("/", 1)[0] in ISTIO_GROUPS or kube_schemas_available():
                found = validate_resource(resource, kube_version)
                problems += [f"{file}: {where} {describe(resource)}: {e}" for e in found]
            else:
                unchecked = True
    return problems, unchecked


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
    kube_version = KUBE_VERSION
    problems: list[str] = []
    scenarios = [f for f in files if _is_scenario_file(f)]
    sound: list[Path] = []  # scenario files whose structure is fine: their resources go to the schema check
    for file in scenarios:
        try:
            load_file(file)
            sound.append(file)
        except ConfigError as exc:
            problems.append(str(exc))
    policy_problems, unchecked = check_policies([f for f in files if f not in scenarios], kube_version)
    problems += policy_problems
    scenario_problems, scenario_unchecked = check_scenario_resources(sound, kube_version)
    problems += scenario_problems
    unchecked = unchecked or scenario_unchecked
    note = " (Kubernetes schema check skipped: pip install 'mesh-jwt-conformance[lint]' for it)" if unchecked else ""
    for line in problems:
        print(line, file=err)
    print(f"meshjwt validate: {len(problems)} problem(s) in {len(files)} file(s){note}", file=out)
    return 1 if problems else 0


def main(argv: Sequence[str]) -> int:
    """Entry of ``meshjwt validate``."""
    return validate(argv)
