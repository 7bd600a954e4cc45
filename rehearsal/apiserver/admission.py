"""What the real admission chain and defaulting add to new objects, and the cluster's one Node."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from rehearsal.apiserver.resources import Kind


def fold_string_data(secret: dict[str, Any]) -> None:
    """As the real API does: a Secret's ``stringData`` is written into ``data`` (base64) and not stored."""
    plain = secret.pop("stringData", None) or {}
    if plain:
        data = secret.setdefault("data", {})
        for key, value in plain.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def admit(obj: dict[str, Any], kind: Kind, namespace: str) -> dict[str, Any]:
    """Defaults of a new object: Secret data, Service type/cluster IP/ports, Deployment fields and empty status."""
    key = kind.key
    if key == "secrets":
        fold_string_data(obj)
    elif key == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") != "None":
            digest = hashlib.sha256(f"{namespace}/{obj['metadata'].get('name')}".encode()).digest()
            spec.setdefault("clusterIP", f"10.96.{digest[0]}.{digest[1] or 1}")
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif key == "deployments.apps":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        obj["status"] = {}
    return obj


def node(name: str, labels: dict[str, str], version: str) -> dict[str, Any]:
    """One Ready control-plane Node, as kind makes it, with extra labels."""
    base = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/control-plane": ""}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {**base, **labels}},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": version, "containerRuntimeVersion": "containerd://1.7.0",
                         "operatingSystem": "linux", "architecture": "amd64"},
        },
    }
