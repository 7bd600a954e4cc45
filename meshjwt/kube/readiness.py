"""Readiness as pure checks on API objects (rollout complete, pods ready with the right proxy), and a polling wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from meshjwt.errors import EnvironmentProblem

Check = tuple[bool, str]
#: what a pod's Istio proxy must look like: an injected ``istio-proxy`` sidecar beside the app, none at
#: all (istiod, CoreDNS, the JWKS server outside the mesh), or a gateway, whose one container *is*
#: ``istio-proxy`` (Istio's gateway chart and the ``gateway`` injection template).
ProxyKind = Literal["sidecar", "none", "gateway"]


def deployment_rolled_out(dep: Mapping[str, Any]) -> Check:
    """What ``kubectl rollout status`` checks: the newest generation observed, updated and available."""
    meta, spec, status = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status", {})
    name, want = meta.get("name", "?"), spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, f"deployment {name}: new generation not observed yet"
    for field in ("updatedReplicas", "readyReplicas", "availableReplicas"):
        if status.get(field, 0) < want:
            return False, f"deployment {name}: {field} {status.get(field, 0)}/{want}"
    if status.get("replicas", 0) > want:
        return False, f"deployment {name}: {status['replicas'] - want} old replicas pending termination"
    return True, f"deployment {name} rolled out"


def _sidecars(pod: Mapping[str, Any]) -> list[str]:
    """Containers that must be ready: regular ones plus native sidecars (init, restartPolicy Always)."""
    spec = pod.get("spec", {})
    names = [c["name"] for c in spec.get("containers", [])]
    names += [c["name"] for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return names


def pod_ready(pod: Mapping[str, Any], *, proxy: ProxyKind) -> Check:
    """Running, every container ready (2/2 with a sidecar), and the ``istio-proxy`` that ``proxy`` says."""
    name = pod.get("metadata", {}).get("name", "?")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False, f"pod {name}: terminating"
    status = pod.get("status", {})
    if status.get("phase") != "Running":
        return False, f"pod {name}: phase {status.get('phase', 'Unknown')}"
    expected = _sidecars(pod)
    statuses = {
        s["name"]: s for s in status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
    }
    ready = sum(1 for n in expected if statuses.get(n, {}).get("ready"))
    has_proxy = "istio-proxy" in expected
    if proxy == "sidecar" and (not has_proxy or len(expected) < 2):
        return False, f"pod {name}: no istio-proxy sidecar (is the namespace labelled for injection?)"
    if proxy == "gateway" and not has_proxy:
        return False, f"pod {name}: gateway pod without an istio-proxy container"
    if proxy == "none" and has_proxy:
        return False, f"pod {name}: unexpected istio-proxy sidecar"
    if ready < len(expected):
        return False, f"pod {name}: {ready}/{len(expected)} containers ready"
    return True, f"pod {name}: {ready}/{len(expected)}"


def pods_ready(pods: list[Mapping[str, Any]], *, proxy: ProxyKind, app: str = "") -> Check:
    """At least one pod, and all of them ready."""
    if not pods:
        return False, f"no pods{' for ' + app if app else ''} yet"
    for pod in pods:
        ok, reason = pod_ready(pod, proxy=proxy)
        if not ok:
            return ok, reason
    return True, f"{len(pods)} pod(s) ready"


def deployment_ready(
    get_json: Callable[[list[str]], Mapping[str, Any]], namespace: str, deployment: str, proxy: ProxyKind
) -> Check:
    """What ``kubectl rollout status`` checks, then every pod of it ready with its proxy; ``get_json``
    runs ``kubectl ARGS -o json`` (e.g. :meth:`meshjwt.kube.kubectl.Kubectl.json`)."""
    dep = get_json(["get", "deployment", deployment, "-n", namespace])
    ok, reason = deployment_rolled_out(dep)
    if not ok:
        return ok, reason
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    pods = get_json(["get", "pods", "-n", namespace, "-l", selector]).get("items", [])
    return pods_ready(pods, proxy=proxy, app=deployment)


def wait_for(
    check: Callable[[], Check],
    *,
    timeout: float,
    what: str,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll ``check`` until it passes; raise EnvironmentProblem with the last reason on timeout."""
    deadline = clock() + timeout
    reason = "not checked"
    while True:
        ok, reason = check()
        if ok:
            return reason
        if clock() >= deadline:
            raise EnvironmentProblem(f"{what} not ready after {timeout:g}s: {reason}")
        sleep(interval)
