"""Sample workloads: ``manifests/workloads`` filled in, images mirrored, JWKS and TLS made per run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from meshjwt.errors import ConfigError
from meshjwt.kube.readiness import ProxyKind
from meshjwt.placeholders import substitute
from meshjwt.samples import workloads_dir

#: deployment order: namespaces first, JWKS servers before anything that could use them.
WORKLOAD_FILES = (
    "namespaces.yaml",
    "nginx-proxy.yaml",
    "jwks-external.yaml",
    "httpbin.yaml",
    "sleep.yaml",
    "bookinfo.yaml",
    "bookinfo-gateway.yaml",
)
#: (namespace variable, deployment, its Istio proxy) that must be ready before scenarios run.
DEPLOYMENTS: tuple[tuple[str, str, ProxyKind], ...] = (
    ("NAMESPACE", "nginx-proxy", "sidecar"),
    ("EXTERNAL_NAMESPACE", "jwks-external", "none"),
    ("NAMESPACE", "httpbin", "sidecar"),
    ("NAMESPACE", "sleep", "sidecar"),
    ("BOOKINFO_NAMESPACE", "details-v1", "sidecar"),
    ("BOOKINFO_NAMESPACE", "ratings-v1", "sidecar"),
    ("BOOKINFO_NAMESPACE", "reviews-v1", "sidecar"),
    ("BOOKINFO_NAMESPACE", "productpage-v1", "sidecar"),
)


def rewrite_image(image: str, registry: str | None) -> str:
    """Swap the registry host of a fully qualified image for a mirror (``None``: unchanged)."""
    if not registry:
        return image
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        image = rest
    return f"{registry.rstrip('/')}/{image}"


def _images(doc: dict[str, Any], registry: str | None) -> None:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for key in ("containers", "initContainers"):
        for container in spec.get(key, []):
            container["image"] = rewrite_image(container["image"], registry)


def load(variables: Mapping[str, str], *, image_registry: str | None = None) -> list[dict[str, Any]]:
    """All workload documents, in deployment order, placeholders filled and images mirrored."""
    directory = workloads_dir()
    docs: list[dict[str, Any]] = []
    for name in WORKLOAD_FILES:
        for raw in yaml.safe_load_all((directory / name).read_text()):
            doc = substitute(raw, variables, where=name)
            if doc:
                _images(doc, image_registry)
                docs.append(doc)
    return docs


def jwks_configmaps(jwks_json: str, namespace: str, external_namespace: str) -> list[dict[str, Any]]:
    """The run's JWKS for nginx-proxy and for the external endpoint."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"jwks.json": jwks_json},
        }
        for name, ns in (("nginx-proxy-jwks", namespace), ("jwks-external-content", external_namespace))
    ]


#: Secret holding the external JWKS endpoint's CA, in the workloads' namespace, for DestinationRules that
#: originate TLS from the httpbin sidecar (``credentialName`` + ``workloadSelector``).
EXTERNAL_JWKS_CA_SECRET = "external-jwks-ca"


def ca_secret(namespace: str, ca_pem: str) -> dict[str, Any]:
    """Generic Secret with only a CA (Istio reads ``cacert``; ``ca.crt`` for other readers)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": EXTERNAL_JWKS_CA_SECRET, "namespace": namespace},
        "stringData": {"cacert": ca_pem, "ca.crt": ca_pem},
    }


def tls_secret(namespace: str, cert_pem: str, key_pem: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "jwks-external-tls", "namespace": namespace},
        "stringData": {"tls.crt": cert_pem, "tls.key": key_pem},
    }


def corefile_with_rewrite(corefile: str, host: str, target: str) -> str:
    """Add ``rewrite name exact host target`` to the ``.:53`` server block (idempotent)."""
    line = f"rewrite name exact {host} {target}"
    kept = [x for x in corefile.splitlines() if not x.strip().startswith(f"rewrite name exact {host} ")]
    for index, text in enumerate(kept):
        if text.strip().startswith(".:53") and text.rstrip().endswith("{"):
            kept.insert(index + 1, f"    {line}")
            return "\n".join(kept) + "\n"
    raise ConfigError("CoreDNS Corefile has no '.:53 {' server block to add the external JWKS host to")
