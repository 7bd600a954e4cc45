"""Readiness as pure checks on API objects (rollout complete, injected pods 2/2), and a polling wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from meshjwt.errors import EnvironmentProblem

Check = tuple[bool, str]


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


def pod_ready(pod: Mapping[str, Any], *, injected: bool) -> Check:
    """Running, every container ready (2/2 with the sidecar), and an istio-proxy iff injected."""
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
    if injected and "istio-proxy" not in expected:
        return False, f"pod {name}: no istio-proxy sidecar (is the namespace labelled for injection?)"
    if not injected and "istio-proxy" in expected:
        return False, f"pod {name}: unexpected istio-proxy sidecar"
    if ready < len(expected):
        return False, f"pod {name}: {ready}/{len(expected)} containers ready"
    return True, f"pod {name}: {ready}/{len(expected)}"


def pods_ready(pods: list[Mapping[str, Any]], *, injected: bool, app: str = "") -> Check:
    """At least one pod, and all of them ready."""
    if not pods:
        return False, f"no pods{' for ' + app if app else ''} yet"
    for pod in pods:
        ok, reason = pod_ready(pod, injected=injected)
        if not ok:
            return ok, reason
    return True, f"{len(pods)} pod(s) ready"


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
