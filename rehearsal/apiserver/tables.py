"""Server-side ``Table`` answers, so plain ``kubectl get`` prints the usual columns."""

from __future__ import annotations

import datetime
from typing import Any


def age(timestamp: str | None) -> str:
    """Kubernetes' short duration (``5s``, ``3m``, ``2h``, ``4d``) since ``timestamp``."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = max(0, int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _pod(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    names = [c["name"] for c in spec.get("containers", [])]
    names += [c["name"] for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    statuses = status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
    ready = sum(1 for s in statuses if s.get("ready") and s.get("name") in names)
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase", "Pending")
    return [f"{ready}/{len(names)}", phase, 0]


def _deployment(obj: dict[str, Any]) -> list[Any]:
    status, want = obj.get("status", {}), obj.get("spec", {}).get("replicas", 1)
    return [f"{status.get('readyReplicas', 0)}/{want}", status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0)]


def _service(obj: dict[str, Any]) -> list[Any]:
    spec = obj.get("spec", {})
    ingress = (obj.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    ports = ",".join(f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/"
                     f"{p.get('protocol', 'TCP')}" for p in spec.get("ports", []))
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", ""), external, ports or "<none>"]


COLUMNS: dict[str, tuple[list[str], Any]] = {
    "pods": (["Ready", "Status", "Restarts"], _pod),
    "deployments.apps": (["Ready", "Up-to-date", "Available"], _deployment),
    "services": (["Type", "Cluster-IP", "External-IP", "Port(s)"], _service),
    "namespaces": (["Status"], lambda o: [o.get("status", {}).get("phase", "Active")]),
    "nodes": (["Status"], lambda o: ["Ready"]),
    "configmaps": (["Data"], lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {})]),
    "secrets": (["Type", "Data"], lambda o: [o.get("type", "Opaque"), len(o.get("data") or {})]),
}


def table(resource: str, objects: list[dict[str, Any]], resource_version: str, include: str) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table: Name, kind-specific columns, Age; rows carry metadata (or the object)."""
    extra, cells = COLUMNS.get(resource, ([], lambda o: []))
    names = ["Name", *extra, "Age"]
    columns = [{"name": n, "type": "integer" if n in ("Restarts", "Data") else "string",
                "format": "name" if n == "Name" else "", "description": "", "priority": 0} for n in names]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], *cells(obj), age(obj["metadata"].get(
            "creationTimestamp"))]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns, "rows": rows}
