"""Validate manifests and scenario files without a cluster.

Kubernetes resources: against the Kubernetes schema of the target version (kubernetes-validate, strict).
Istio resources: against Istio's API schema (cloudcoil-models-istio), with unknown fields rejected.
Scenario files (``kind: Scenario``) embed resources under ``manifests: [{inline: ...} | {file: ...}]``.
``${VAR}`` placeholders get plausible values first. Usage: ``python -m meshjwt.kube.validate [PATHS...]``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import sys
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from meshjwt.data import UnknownManifest, manifest_file
from meshjwt.kube.versions import DEFAULT_ISTIO, ISTIO_RELEASES
from meshjwt.placeholders import substitute
from meshjwt.samples import EXTERNAL_JWKS_HOST

DEFAULT_PATHS = ("manifests", "suites/scenarios")
ISTIO_GROUPS = {
    "security.istio.io": "security",
    "networking.istio.io": "networking",
    "telemetry.istio.io": "telemetry",
    "extensions.istio.io": "extensions",
}
PLAUSIBLE: dict[str, str] = {
    "ISSUER": "https://issuer.meshjwt.test",
    "JWKS": '{"keys": []}',
    "JWKS_WITHOUT_ALG": '{"keys": []}',
    "NAMESPACE": "foo",
    "BOOKINFO_NAMESPACE": "default",
    "ROOT_NAMESPACE": "istio-system",
    "EXTERNAL_NAMESPACE": "jwks-external",
    "EXTERNAL_JWKS_HOST": EXTERNAL_JWKS_HOST,
    "INJECTION_LABEL_KEY": "istio-injection",
    "INJECTION_LABEL_VALUE": "enabled",
}


def plausible(name: str) -> str:
    """A value for ``${name}``: a known one, else something name-shaped and valid (``x-<name>``)."""
    return PLAUSIBLE.get(name, "x-" + name.lower().replace("_", "-"))


def fill(value: Any) -> Any:
    """Substitute placeholders in every string (keys included) of a parsed document with plausible values."""
    return substitute(value, plausible, where="validate")


#: fields Istio added after the API schema this validator pins (cloudcoil-models-istio 1.24; the package index has no
#: later one): (kind, a property that marks the object) → {field: (JSON schema, the Istio release that added it)}
NEWER_FIELDS: dict[tuple[str, str], dict[str, tuple[dict[str, Any], str]]] = {
    ("RequestAuthentication", "forwardOriginalToken"): {
        "spaceDelimitedClaims": ({"type": "array", "items": {"type": "string"}}, "1.28"),
    },
}


def _with_newer_fields(schema: Any, kind: str) -> Any:
    """Add :data:`NEWER_FIELDS` of ``kind`` to each object schema they belong to."""
    for (owner, marker), added in NEWER_FIELDS.items():
        if owner != kind:
            continue
        stack = [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if marker in (node.get("properties") or {}):
                    node["properties"].update({name: field for name, (field, _) in added.items()})
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return schema


def _strict(schema: Any) -> Any:
    """Reject unknown fields: ``additionalProperties: false`` on every object schema with properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


#: the Istio kinds whose schemas ship with the package (``istio-schemas.json``), so that the base install checks
#: policies: the kinds the local mesh translates or names in its refusals, in each served apiVersion
SHIPPED_KINDS = {
    "security.istio.io": (("v1", "v1beta1"), ("RequestAuthentication", "AuthorizationPolicy", "PeerAuthentication")),
    "networking.istio.io": (("v1", "v1beta1", "v1alpha3"), ("ServiceEntry", "DestinationRule")),
}
SHIPPED_FILE = "istio-schemas.json"


def generated_istio_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """Istio's schema of ``kind`` at ``api_version`` from cloudcoil-models-istio (the ``lint`` extra), strict and
    with :data:`NEWER_FIELDS`; None when unknown or the package is not installed."""
    group, _, version = api_version.partition("/")
    try:
        module = importlib.import_module(f"cloudcoil.models.istio.{ISTIO_GROUPS[group]}.{version}")
        model = getattr(module, kind)
    except (KeyError, ImportError, AttributeError):
        return None
    schema = _strict(_with_newer_fields(copy.deepcopy(model.model_json_schema(by_alias=True, mode="validation")), kind))
    schema["properties"].pop("status", None)
    return schema


def generate_shipped() -> dict[str, Any]:
    """The content of ``istio-schemas.json`` (``python -m meshjwt.kube.validate --write-istio-schemas``)."""
    return {f"{group}/{version} {kind}": generated_istio_schema(f"{group}/{version}", kind)
            for group, (versions, kinds) in SHIPPED_KINDS.items()
            for version in versions for kind in kinds}  # fmt: skip


@functools.cache
def shipped_schemas() -> dict[str, Any]:
    """The schemas shipped with the package (``meshjwt/kube/istio-schemas.json``)."""
    return json.loads(resources.files("meshjwt.kube").joinpath(SHIPPED_FILE).read_text(encoding="utf-8"))


@functools.cache
def istio_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """Istio's schema of ``kind`` at ``api_version``: shipped, else from the ``lint`` extra; None when unknown."""
    shipped = shipped_schemas().get(f"{api_version} {kind}")
    return copy.deepcopy(shipped) if shipped else generated_istio_schema(api_version, kind)


def closest_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors to report for ``error``: of an anyOf/oneOf (Istio's schema: a field or null, or variants of a
    spec), those of the alternative that came closest (fewest errors; a null alternative only if nothing else)."""
    if not error.context:
        return [error]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)
    real = [errs for errs in branches.values() if not any(e.validator == "type" and e.validator_value == "null"
                                                           for e in errs)]  # fmt: skip
    best = min(real or list(branches.values()), key=len)
    return [leaf for sub in best for leaf in closest_errors(sub)]


def validate_resource(doc: Mapping[str, Any], kube_version: str) -> list[str]:
    """Errors of one resource (empty list: valid)."""
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str):
        return ["not a Kubernetes resource (apiVersion and kind are required)"]
    if api.split("/", 1)[0] in ISTIO_GROUPS:
        schema = istio_schema(api, kind)
        if schema is None:
            return [f"unknown Istio resource {api} {kind}"]
        found = sorted(jsonschema.Draft202012Validator(schema).iter_errors(dict(doc)), key=lambda e: e.path)
        errors = [leaf for top in found for leaf in closest_errors(top)]
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:160]}" for e in errors]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(doc), kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{path or '<root>'}: {exc.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return [f"no schema: {exc}"]
    return []


def resources_of(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, resource) for every resource in a manifest or scenario file, placeholders filled."""
    with path.open() as stream:
        docs = [d for d in yaml.safe_load_all(stream) if d is not None]
    for index, doc in enumerate(docs):
        if isinstance(doc, dict) and doc.get("kind") == "Scenario":
            for number, entry in enumerate(doc.get("manifests") or []):
                if isinstance(entry, dict) and "inline" in entry:
                    yield f"manifests[{number}] (inline)", fill(entry["inline"])
                elif isinstance(entry, dict) and "file" in entry:
                    try:  # as the scenario loader resolves it
                        ref = manifest_file(entry["file"], path.parent)
                    except UnknownManifest as exc:
                        yield f"manifests[{number}]", {"__error__": f"file {exc}"}
                        continue
                    for where, resource in resources_of(ref):
                        yield f"manifests[{number}] {ref}: {where}", resource
                else:
                    yield f"manifests[{number}]", {"__error__": "expected {inline: ...} or {file: ...}"}
        else:
            yield f"document {index}", fill(doc)


def describe(resource: Any) -> str:
    if not isinstance(resource, dict):
        return "?"
    meta = resource.get("metadata") or {}
    return f"{resource.get('kind', '?')}/{meta.get('name', '?')}"


def validate_paths(paths: list[Path], kube_version: str) -> list[str]:
    """One line per problem: ``file: where kind/name: error``."""
    problems: list[str] = []
    files = sorted(
        {f for p in paths for f in ([p] if p.is_file() else [*p.rglob("*.yaml"), *p.rglob("*.yml")])}
    )
    for file in files:
        try:
            items = list(resources_of(file))
        except yaml.YAMLError as exc:
            problems.append(f"{file}: invalid YAML: {' '.join(str(exc).split())}")
            continue
        for where, resource in items:
            if isinstance(resource, dict) and "__error__" in resource:
                problems.append(f"{file}: {where}: {resource['__error__']}")
                continue
            if not isinstance(resource, dict):
                problems.append(f"{file}: {where}: not a mapping")
                continue
            for error in validate_resource(resource, kube_version):
                problems.append(f"{file}: {where} {describe(resource)}: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m meshjwt.kube.validate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--write-istio-schemas", action="store_true",
                        help=f"regenerate meshjwt/kube/{SHIPPED_FILE} from cloudcoil-models-istio")  # fmt: skip
    parser.add_argument(
        "--kubernetes-version", default=ISTIO_RELEASES[DEFAULT_ISTIO].node_version.lstrip("v")
    )
    args = parser.parse_args(argv)
    if args.write_istio_schemas:
        target = Path(__file__).with_name(SHIPPED_FILE)
        target.write_text(json.dumps(generate_shipped(), sort_keys=True, separators=(",", ":")) + "\n")
        print(f"validate: wrote {target}")
        return 0
    paths = args.paths or [Path(p) for p in DEFAULT_PATHS if Path(p).exists()]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"validate: no such path: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    problems = validate_paths(paths, args.kubernetes_version)
    for line in problems:
        print(line, file=sys.stderr)
    print(
        f"validate: {len(problems)} problem(s) in {', '.join(map(str, paths))} "
        f"(Kubernetes {args.kubernetes_version})"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
