"""What the control plane and kubelet would do: Deployment → ReplicaSet → Pods, pods becoming Ready,
Deployment status, garbage collection by owner, namespace termination, a default ServiceAccount."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from rehearsal.apiserver.errors import ApiError
from rehearsal.apiserver.store import Store, now

log = logging.getLogger("rehearsal.apiserver")
Injector = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated names
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(SAFE) for _ in range(n))


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(SAFE[b % len(SAFE)] for b in digest[:10])


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def pod_defaults(pod: dict[str, Any], node: str | None) -> dict[str, Any]:
    """What admission and the scheduler add to a new pod: a node, default fields, status Pending."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    if node:
        spec.setdefault("nodeName", node)
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort",
                     "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]}
    return pod


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def running_status(pod: dict[str, Any], ip: str) -> dict[str, Any]:
    """Status of a started pod: Running, Ready; native sidecars running and ready, init containers Completed."""
    spec, started = pod.get("spec", {}), now()

    def status(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                "containerID": f"containerd://{secrets.token_hex(16)}", "ready": ready, "started": True,
                "restartCount": 0, "state": state}

    running = {"running": {"startedAt": started}}
    init = [status(c, running, True) if c.get("restartPolicy") == "Always" else
            status(c, {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                      "finishedAt": started}}, True) | {"started": False}
            for c in spec.get("initContainers", [])]
    conditions = [{"type": t, "status": "True", "lastTransitionTime": started}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    out = {"phase": "Running", "conditions": conditions, "hostIP": "172.18.0.2", "podIP": ip,
           "podIPs": [{"ip": ip}], "startTime": started, "qosClass": "BestEffort",
           "containerStatuses": [status(c, running, True) for c in spec.get("containers", [])]}
    if init:
        out["initContainerStatuses"] = init
    return out


class Controllers:
    """Reacts to store events on the server's event loop; timers for pod start-up and namespace termination."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop, *, injector: Injector | None,
                 node: str | None, pod_ready_delay: float, namespace_finalize_delay: float) -> None:
        self.store, self.loop, self.injector, self.node = store, loop, injector, node
        self.pod_ready_delay, self.namespace_finalize_delay = pod_ready_delay, namespace_finalize_delay
        self._timers: set[asyncio.TimerHandle] = set()
        self._terminating: set[str] = set()
        self._dirty: set[tuple[str, str]] = set()
        self._stopped = False
        self._ips = 10

    # --- plumbing -----------------------------------------------------------------------
    def on_event(self, event: str, resource: str, obj: dict[str, Any]) -> None:
        """Store subscriber: hand the event to the loop (any thread)."""
        if self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the server is stopping
            self.loop.call_soon_threadsafe(self._guarded, self._handle, event, resource, obj)

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            self._timers.discard(handle)  # type: ignore[arg-type]
            self._guarded(fn, *args)

        handle = self.loop.call_later(delay, run)
        self._timers.add(handle)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        if self._stopped:
            return
        try:
            fn(*args)
        except ApiError as exc:  # raced with another writer: the next event reconciles again
            log.debug("controller: %s", exc.message)
        except Exception:
            log.exception("controller failed")

    def stop(self) -> None:
        self._stopped = True
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()

    # --- events -------------------------------------------------------------------------
    def _handle(self, event: str, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if event == "DELETED":
            self._collect_garbage(namespace, meta.get("uid", ""))
        if resource == "deployments.apps" and event != "DELETED":
            self._mark(namespace, name)
        elif resource == "replicasets.apps":
            self._owner_deployment(obj)
        elif resource == "pods":
            if event == "ADDED" and (obj.get("status") or {}).get("phase", "Pending") == "Pending":
                self._later(self.pod_ready_delay, self._start_pod, namespace, name, meta.get("uid"))
            rs = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "ReplicaSet"), None)
            if rs:
                owner = self.store.get("replicasets.apps", namespace, rs["name"])
                if owner:
                    self._owner_deployment(owner)
        elif resource == "namespaces":
            if event == "ADDED":
                self._default_service_account(name)
            elif event == "MODIFIED" and meta.get("deletionTimestamp") and name not in self._terminating:
                self._terminating.add(name)
                self._later(self.namespace_finalize_delay, self._finalize_namespace, name)
            elif event == "DELETED":
                self._terminating.discard(name)

    def _owner_deployment(self, rs: dict[str, Any]) -> None:
        ref = next((r for r in rs["metadata"].get("ownerReferences") or [] if r.get("kind") == "Deployment"), None)
        if ref:
            self._mark(rs["metadata"]["namespace"], ref["name"])

    def _mark(self, namespace: str, name: str) -> None:
        """Reconcile a deployment once per loop iteration, however many events asked for it."""
        if (namespace, name) not in self._dirty:
            self._dirty.add((namespace, name))
            self.loop.call_soon(self._guarded, self._reconcile, namespace, name)

    # --- namespaces ---------------------------------------------------------------------
    def _default_service_account(self, namespace: str) -> None:
        if self.store.get("serviceaccounts", namespace, "default") is None:
            self.store.create({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": "default", "namespace": namespace}})

    def _finalize_namespace(self, name: str) -> None:
        for kind in self.store.registry.all():
            if kind.namespaced:
                for obj in self.store.list(kind.key, name):
                    with contextlib.suppress(ApiError):
                        self.store.delete(kind.key, name, obj["metadata"]["name"])
        with contextlib.suppress(ApiError):
            self.store.delete("namespaces", None, name)

    def _collect_garbage(self, namespace: str, uid: str) -> None:
        if not uid or not namespace:
            return
        for resource in ("replicasets.apps", "pods"):
            for obj in self.store.list(resource, namespace):
                if owned_by(obj, uid):
                    with contextlib.suppress(ApiError):
                        self.store.delete(resource, namespace, obj["metadata"]["name"])

    # --- pods ---------------------------------------------------------------------------
    def _start_pod(self, namespace: str, name: str, uid: str | None) -> None:
        pod = self.store.get("pods", namespace, name)
        if pod is None or pod["metadata"].get("uid") != uid or pod["metadata"].get("deletionTimestamp"):
            return
        self._ips = self._ips % 250 + 1
        pod["status"] = running_status(pod, f"10.244.0.{self._ips + 3}")
        self.store.replace(pod)

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Default, inject (the injector sees every new pod with its namespace) and store a pod."""
        pod = pod_defaults(pod, self.node)
        if self.injector is not None:
            namespace = self.store.get("namespaces", None, pod["metadata"].get("namespace", "default")) or {}
            pod = self.injector(copy.deepcopy(pod), namespace)
        return self.store.create(pod)

    # --- deployments --------------------------------------------------------------------
    def _reconcile(self, namespace: str, name: str) -> None:
        self._dirty.discard((namespace, name))
        dep = self.store.get("deployments.apps", namespace, name)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return
        spec, uid = dep.get("spec", {}), dep["metadata"]["uid"]
        want = int(spec.get("replicas", 1))
        template = copy.deepcopy(spec.get("template", {}))
        pod_hash = template_hash(template)
        rs_name = f"{name}-{pod_hash}"
        sets = [rs for rs in self.store.list("replicasets.apps", namespace) if owned_by(rs, uid)]
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in sets]
        current = next((rs for rs in sets if rs["metadata"]["name"] == rs_name), None)
        if current is None:
            current = self._new_replicaset(dep, rs_name, pod_hash, template, max(revisions, default=0) + 1, want)
            sets.append(current)
        elif current["spec"].get("replicas") != want:
            current["spec"]["replicas"] = want
            current = self.store.replace(current)
        pods = [p for p in self.store.list("pods", namespace)
                if any(owned_by(p, rs["metadata"]["uid"]) for rs in sets)]
        new = [p for p in pods if owned_by(p, current["metadata"]["uid"])]
        old = [p for p in pods if p not in new]
        for _ in range(want - len(new)):
            new.append(self._pod_for(current))
        for extra in new[want:]:
            self.store.delete("pods", namespace, extra["metadata"]["name"])
        new = new[:want]
        ready_new = sum(1 for p in new if pod_ready(p))
        if ready_new >= want and old:
            for pod in old:
                self.store.delete("pods", namespace, pod["metadata"]["name"])
            old = []
            for rs in sets:
                if rs["metadata"]["name"] != rs_name and rs["spec"].get("replicas"):
                    rs["spec"]["replicas"] = 0
                    self.store.replace(rs)
        for rs in sets:
            self._replicaset_status(rs, [p for p in new + old if owned_by(p, rs["metadata"]["uid"])])
        self._deployment_status(dep, want, new, old)

    def _new_replicaset(self, dep: dict[str, Any], rs_name: str, pod_hash: str, template: dict[str, Any],
                        revision: int, want: int) -> dict[str, Any]:
        labels = {**(template.get("metadata", {}).get("labels") or {}), HASH_LABEL: pod_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(dep["spec"].get("selector") or {"matchLabels": {}})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        dep_meta = dep["metadata"]
        annotations = dict(dep_meta.get("annotations") or {})
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        annotations[REVISION] = str(revision)
        live = self.store.get("deployments.apps", dep_meta["namespace"], dep_meta["name"])
        if live is not None:  # a concurrent writer wins (409); the reconcile it triggers sees its change
            live["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            self.store.replace(live)
        return self.store.create({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": dep_meta["namespace"], "labels": labels,
                         "annotations": annotations, "ownerReferences": [owner_ref(dep)]},
            "spec": {"replicas": want, "selector": selector, "template": template},
        })

    def _pod_for(self, rs: dict[str, Any]) -> dict[str, Any]:
        template = copy.deepcopy(rs["spec"]["template"])
        meta = template.get("metadata", {})
        rs_name = rs["metadata"]["name"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {**meta, "name": f"{rs_name}-{random_suffix()}", "generateName": f"{rs_name}-",
                            "namespace": rs["metadata"]["namespace"], "ownerReferences": [owner_ref(rs)]},
               "spec": template.get("spec", {})}
        return self.create_pod(pod)

    def _replicaset_status(self, rs: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        ready = sum(1 for p in pods if pod_ready(p))
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}
        live = self.store.get("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"])
        if live is not None and live.get("status") != status:
            live["status"] = status
            self.store.replace(live)

    def _deployment_status(self, dep: dict[str, Any], want: int, new: list[dict[str, Any]],
                           old: list[dict[str, Any]]) -> None:
        live = self.store.get("deployments.apps", dep["metadata"]["namespace"], dep["metadata"]["name"])
        if live is None:
            return
        ready = sum(1 for p in new + old if pod_ready(p))
        total = len(new) + len(old)
        complete = len(new) >= want and not old and ready >= want
        previous = {c.get("type"): c for c in (live.get("status") or {}).get("conditions", [])}

        def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            before = previous.get(kind, {})
            changed = before.get("status") != ("True" if ok else "False")
            stamp = now() if changed or not before else before.get("lastTransitionTime", now())
            return {"type": kind, "status": "True" if ok else "False", "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp, "reason": reason, "message": message}

        name = dep["metadata"]["name"]
        status: dict[str, Any] = {
            "observedGeneration": live["metadata"].get("generation", 1),
            "replicas": total, "updatedReplicas": len(new), "readyReplicas": ready, "availableReplicas": ready,
            "conditions": [
                condition("Available", ready >= want, "MinimumReplicasAvailable" if ready >= want else
                          "MinimumReplicasUnavailable", "Deployment has minimum availability." if ready >= want
                          else "Deployment does not have minimum availability."),
                condition("Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                          f'ReplicaSet "{name}" has successfully progressed.' if complete
                          else f'ReplicaSet "{name}" is progressing.'),
            ],
        }
        if total - ready > 0:
            status["unavailableReplicas"] = total - ready
        for field in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if not status[field]:
                del status[field]
        if _without_stamps(live.get("status") or {}) != _without_stamps(status):
            live["status"] = status
            self.store.replace(live)


def _without_stamps(status: dict[str, Any]) -> dict[str, Any]:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")} for c in status.get("conditions", [])]
    return out
