"""The Istio CRDs the suite uses, as the base chart defines them (names, versions, scope; schemas left open).

Facts from Istio's ``manifests/charts/base/files/crd-all.gen.yaml``: every kind below is Namespaced with a
``status`` subresource; networking kinds serve v1 (storage), v1alpha3 and v1beta1; security kinds serve
v1 (storage) and v1beta1. The golden install output has no CRDs, so they are described here.
"""

from __future__ import annotations

from typing import Any

#: (group, kind, plural, short name or None, versions with the storage version first)
_NETWORKING = ("v1", "v1alpha3", "v1beta1")
_SECURITY = ("v1", "v1beta1")
KINDS: tuple[tuple[str, str, str, str | None, tuple[str, ...]], ...] = (
    ("security.istio.io", "RequestAuthentication", "requestauthentications", "ra", _SECURITY),
    ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies", "ap", _SECURITY),
    ("security.istio.io", "PeerAuthentication", "peerauthentications", "pa", _SECURITY),
    ("networking.istio.io", "ServiceEntry", "serviceentries", "se", _NETWORKING),
    ("networking.istio.io", "DestinationRule", "destinationrules", "dr", _NETWORKING),
    ("networking.istio.io", "Gateway", "gateways", "gw", _NETWORKING),
    ("networking.istio.io", "VirtualService", "virtualservices", "vs", _NETWORKING),
    ("networking.istio.io", "Sidecar", "sidecars", None, _NETWORKING),
)


def crd(group: str, kind: str, plural: str, short: str | None, versions: tuple[str, ...]) -> dict[str, Any]:
    """One CustomResourceDefinition with an open (preserve-unknown-fields) schema per served version."""
    names: dict[str, Any] = {
        "categories": ["istio-io", f"{group.split('.')[0]}-istio-io"],
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if short:
        names["shortNames"] = [short]
    labels = {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"}
    if group == "security.istio.io":
        labels["istio"] = "security"
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": labels,
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": index == 0,
                    "schema": schema,
                    "subresources": {"status": {}},
                }
                for index, version in enumerate(versions)
            ],
        },
    }


def istio_crds() -> list[dict[str, Any]]:
    """The eight CRDs, security.istio.io first."""
    return [crd(*spec) for spec in KINDS]
