"""Command plans as pure data: kind config, IstioOperator overlay, istioctl/kubectl/curl command lines."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshjwt.kube.versions import IstioRelease

#: NodePorts of the ingress gateway on kind, published on the host through extraPortMappings.
INGRESS_NODE_PORTS = {"http": 31080, "https": 31443}
CONFIG_HASH_LABEL = "meshjwt.io/config-hash"
RUN_LABEL = "meshjwt.io/run"

#: suite's jwks_fetch_mode → PILOT_JWT_ENABLE_REMOTE_JWKS value.
REMOTE_JWKS_ENV = {"istiod": "false", "hybrid": "true", "envoy": "envoy"}
#: istiod's JWKS refresh on kind (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL; istiod's default 20m): short, so that a
#: rotated or healed JWKS reaches the proxies within a case's convergence
KIND_JWKS_REFRESH_INTERVAL = "15s"
#: istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL when its env does not set it
ISTIOD_DEFAULT_REFRESH_SECONDS = 20 * 60.0
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def fetch_mode_of(env_value: str | None) -> str:
    """PILOT_JWT_ENABLE_REMOTE_JWKS value (None when unset) → suite's fetch mode name."""
    value = (env_value or "false").strip().lower()
    return {"false": "istiod", "istiod": "istiod", "true": "hybrid", "hybrid": "hybrid"}.get(value, value)


def refresh_seconds(env_value: str | None) -> float:
    """istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL (a Go duration such as ``15s`` or ``1m30s``; None when
    unset: 20 min) in seconds; ValueError for anything else."""
    text = (env_value or "").strip()
    if not text:
        return ISTIOD_DEFAULT_REFRESH_SECONDS
    parts = _GO_DURATION.findall(text)
    if "".join(a + b for a, b in parts) != text:
        raise ValueError(f"PILOT_JWT_PUB_KEY_REFRESH_INTERVAL={text!r} is not a duration like '15s' or '20m'")
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(amount) * factor[unit] for amount, unit in parts)


def config_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (fits a label value)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def kind_config(
    node_image: str, host_ports: Mapping[str, int], *, config_label: str | None = None
) -> dict[str, Any]:
    """One-node kind cluster with the gateway NodePorts published on 127.0.0.1."""
    node: dict[str, Any] = {
        "role": "control-plane",
        "image": node_image,
        "extraPortMappings": [
            {
                "containerPort": INGRESS_NODE_PORTS[name],
                "hostPort": int(host_ports[name]),
                "listenAddress": "127.0.0.1",
                "protocol": "TCP",
            }
            for name in ("http", "https")
        ],
    }
    if config_label:
        node["labels"] = {CONFIG_HASH_LABEL: config_label}
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [node]}


def istio_operator(
    jwks_fetch_mode: str, *, image_registry: str | None = None, node_ports: bool = True
) -> dict[str, Any]:
    """IstioOperator overlay: profile demo, JWKS fetch mode, fixed gateway NodePorts, optional mirror."""
    gateway: dict[str, Any] = {"name": "istio-ingressgateway", "enabled": True}
    if node_ports:
        gateway["k8s"] = {
            "service": {
                "type": "NodePort",
                "ports": [
                    {"name": "status-port", "port": 15021, "targetPort": 15021},
                    {"name": "http2", "port": 80, "targetPort": 8080, "nodePort": INGRESS_NODE_PORTS["http"]},
                    {
                        "name": "https",
                        "port": 443,
                        "targetPort": 8443,
                        "nodePort": INGRESS_NODE_PORTS["https"],
                    },
                ],
            }
        }
    values: dict[str, Any] = {
        "pilot": {"env": {"PILOT_JWT_ENABLE_REMOTE_JWKS": REMOTE_JWKS_ENV[jwks_fetch_mode],
                          "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL": KIND_JWKS_REFRESH_INTERVAL}}
    }
    if image_registry:
        values["global"] = {"hub": f"{image_registry.rstrip('/')}/istio"}
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "spec": {
            "profile": "demo",
            "meshConfig": {"accessLogFile": "/dev/stdout"},
            "values": values,
            "components": {
                "ingressGateways": [gateway],
                "egressGateways": [{"name": "istio-egressgateway", "enabled": False}],
            },
        },
    }


def istioctl_install_args(
    istioctl: str, overlay_file: str, kubeconfig: str, release: IstioRelease, readiness_timeout: float
) -> list[str]:
    """``istioctl install -y -f overlay`` against our kubeconfig, waiting for readiness."""
    return [
        istioctl,
        "install",
        "-y",
        "-f",
        overlay_file,
        "--kubeconfig",
        kubeconfig,
        "--readiness-timeout",
        f"{int(readiness_timeout)}s",
    ]


def kubectl_base(kubectl: str, kubeconfig: str | None = None, context: str | None = None) -> list[str]:
    """kubectl with an explicit kubeconfig/context (never the user's implicit current context on kind)."""
    args = [kubectl]
    if kubeconfig:
        args += ["--kubeconfig", kubeconfig]
    if context:
        args += ["--context", context]
    return args


def exec_args(
    base: Sequence[str], namespace: str, pod: str, container: str, command: Sequence[str], *, stdin: bool = False
) -> list[str]:
    """``kubectl exec`` without TTY (with stdin only when asked), naming the container."""
    return [*base, "exec", *(["-i"] if stdin else []), "-n", namespace, pod, "-c", container, "--", *command]


def rollout_status_args(base: Sequence[str], namespace: str, deployment: str, timeout: float) -> list[str]:
    return [
        *base,
        "rollout",
        "status",
        "-n",
        namespace,
        f"deployment/{deployment}",
        f"--timeout={int(timeout)}s",
    ]
