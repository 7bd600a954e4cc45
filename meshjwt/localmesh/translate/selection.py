"""Which Istio policies apply to which workload (namespace, root namespace and selector scoping)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshjwt.errors import UnsupportedField
from meshjwt.localmesh.world import Workload


def resource_id(resource: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` for messages."""
    meta = resource.get("metadata", {})
    return f"{resource.get('kind')} {meta.get('namespace', 'default')}/{meta.get('name')}"


def check_targeting(resource: Mapping[str, Any]) -> None:
    """Refuse ``spec.targetRef``/``targetRefs``: the local mesh has sidecars and a gateway, no Gateway API."""
    spec = resource.get("spec") or {}
    for ref in ("targetRef", "targetRefs"):
        if isinstance(spec, Mapping) and ref in spec:
            raise UnsupportedField(
                f"{resource_id(resource)}: spec.{ref} is not supported by the local mesh "
                "(it models sidecars and the ingress gateway, not Gateway API or waypoints); use spec.selector"
            )


def applies_to(resource: Mapping[str, Any], workload: Workload, root_namespace: str) -> bool:
    """True if the RequestAuthentication/AuthorizationPolicy selects ``workload``, as istiod decides.

    No selector: every workload of the policy's namespace, or of the mesh for the root namespace.
    A selector: matching workloads of the policy's namespace, or of any namespace for the root one.
    """
    check_targeting(resource)
    spec = resource.get("spec") or {}
    namespace = resource["metadata"].get("namespace", "default")
    in_scope = namespace == root_namespace or namespace == workload.namespace
    selector = spec.get("selector")
    if selector is None:
        return in_scope
    unknown = set(selector) - {"matchLabels"}
    if unknown:
        raise UnsupportedField(f"{resource_id(resource)}: spec.selector.{sorted(unknown)[0]} is not supported")
    labels = selector.get("matchLabels") or {}
    return in_scope and all(workload.labels.get(k) == v for k, v in labels.items())
