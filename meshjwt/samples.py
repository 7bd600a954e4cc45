"""The sample workloads' fixed facts, in one place: the external JWKS host, the gateway's labels, and the
folder of their manifests (which say the rest: namespaces, Services, ports, the gateway's routes)."""

from __future__ import annotations

from pathlib import Path

from meshjwt import data

#: where the external JWKS endpoint lives, outside the cluster: a name no Kubernetes Service has (kind's
#: CoreDNS rewrites it to the ``jwks-external`` Service; the local mesh maps it to its external server)
EXTERNAL_JWKS_HOST = "jwks.meshjwt.test"
#: where the JWKS servers serve the keys: nginx-proxy (manifests/workloads/nginx-proxy.yaml) and the external
#: endpoint (manifests/workloads/jwks-external.yaml)
NGINX_JWKS_PATH = "/get_jwks"
EXTERNAL_JWKS_PATH = "/.well-known/jwks.json"
#: the ingress gateway's pod labels (Istio's gateway chart); gateway policies select ``istio: ingressgateway``
GATEWAY_LABELS = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
#: httpbin's pod labels (manifests/workloads/httpbin.yaml)
HTTPBIN_LABELS = {"app": "httpbin", "version": "v1"}


def workloads_dir() -> Path:
    """``manifests/workloads``: httpbin, sleep, nginx-proxy, the external JWKS endpoint, Bookinfo."""
    return data.manifests_dir() / "workloads"
