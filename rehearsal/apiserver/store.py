"""Objects with uid, resourceVersion, generation and creationTimestamp; watch fan-out and subscribers."""

from __future__ import annotations

import copy
import datetime
import logging
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from rehearsal.apiserver import errors
from rehearsal.apiserver.resources import Kind, Registry

log = logging.getLogger("rehearsal.apiserver")
Event = tuple[str, str, dict[str, Any]]  # (type, resource key, object)
Subscriber = Callable[[str, str, dict[str, Any]], None]
Sink = Callable[[int, str, dict[str, Any]], None]  # (resourceVersion, type, object), called under the lock
HISTORY = 20000
#: namespaces every cluster has.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What a generation covers: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    """Thread-safe objects of every kind; callable from any thread.

    Stored objects are never mutated in place (each change stores a new dict), so watch events can share them;
    everything handed out to callers is a copy."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._rv = 0
        self._history: deque[tuple[int, str, str, dict[str, Any]]] = deque(maxlen=HISTORY)
        self._sinks: dict[int, tuple[str, str | None, Sink]] = {}
        self._next_sink = 0
        self._subscribers: list[Subscriber] = []
        self._pending: deque[Event] = deque()
        self._dispatch_lock = threading.Lock()
        self._dispatching = threading.local()
        self._side: dict[str, dict[str, Any]] = {}  # uid → server-side-apply state

    # --- reading ------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A copy of one object, or None."""
        with self._lock:
            obj = self._objects.get(resource, {}).get((namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the objects of one resource (one namespace, or all), sorted by namespace and name."""
        with self._lock:
            items = self._objects.get(resource, {})
            return [copy.deepcopy(items[k]) for k in sorted(items) if namespace is None or k[0] == namespace]

    def snapshot(self, resource: str, namespace: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(resourceVersion, shared objects) — read-only references, for serializing lists."""
        with self._lock:
            items = self._objects.get(resource, {})
            return self._rv, [items[k] for k in sorted(items) if namespace is None or k[0] == namespace]

    def kind_of(self, obj: dict[str, Any]) -> Kind:
        return self.registry.by_api_version(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    # --- writing ------------------------------------------------------------------------
    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object (uid, resourceVersion, generation 1, creationTimestamp); returns a copy.

        Raises ApiError: 409 if it exists, 404 if its namespace does not, 403 if that namespace is terminating."""
        kind = self.kind_of(obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        if not name:
            raise errors.invalid(kind, "", "metadata.name: Required value: name or generateName is required")
        if not kind.namespaced:
            meta.pop("namespace", None)
        elif not meta.get("namespace"):
            meta["namespace"] = "default"
        namespace = meta.get("namespace", "")
        with self._lock:
            if kind.namespaced:
                ns = self._objects.get("namespaces", {}).get(("", namespace))
                if ns is None:
                    raise errors.not_found(self.registry.by_key("namespaces"), namespace)
                if ns["metadata"].get("deletionTimestamp"):
                    raise errors.namespace_terminating(kind, name, namespace)
            bucket = self._objects.setdefault(kind.key, {})
            if (namespace, name) in bucket:
                raise errors.already_exists(kind, name)
            self._rv += 1
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(self._rv)
            meta["creationTimestamp"] = now()
            if kind.generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            for empty in ("deletionTimestamp",):
                meta.pop(empty, None)
            if kind.key == "namespaces":
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
                obj["status"] = {"phase": "Active"}
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            bucket[(namespace, name)] = obj
            self._record("ADDED", kind.key, obj)
            result = copy.deepcopy(obj)
        self._dispatch()
        return result

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an existing object (keeps uid/creationTimestamp; generation bumps on spec changes).

        A ``metadata.resourceVersion`` that is not the current one is a 409 Conflict; returns a copy."""
        kind = self.kind_of(obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if kind.namespaced else ""
        name = meta.get("name", "")
        with self._lock:
            bucket = self._objects.get(kind.key, {})
            old = bucket.get((namespace, name))
            if old is None:
                raise errors.not_found(kind, name)
            old_meta = old["metadata"]
            if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
                raise errors.conflict(kind, name)
            if old == {**obj, "metadata": {**meta, "resourceVersion": old_meta["resourceVersion"]}}:
                return copy.deepcopy(old)  # no change, no new resourceVersion (as the real server)
            for key in ("uid", "creationTimestamp"):
                meta[key] = old_meta[key]
            if kind.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if kind.generation:
                generation = old_meta.get("generation", 1)
                meta["generation"] = generation + 1 if _spec_part(obj) != _spec_part(old) else generation
            else:
                meta.pop("generation", None)
            if old_meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            bucket[(namespace, name)] = obj
            self._record("MODIFIED", kind.key, obj)
            result = copy.deepcopy(obj)
        self._dispatch()
        return result

    def mark_deleting(self, resource: str, namespace: str | None, name: str, **status: Any) -> dict[str, Any]:
        """Set ``deletionTimestamp`` (and status fields, e.g. phase Terminating) without removing the object."""
        with self._lock:
            obj = self._objects.get(resource, {}).get((namespace or "", name))
            if obj is None:
                raise errors.not_found(self.registry.by_key(resource), name)
            new = copy.deepcopy(obj)
            new["metadata"].setdefault("deletionTimestamp", now())
            if status:
                new.setdefault("status", {}).update(status)
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[resource][(namespace or "", name)] = new
            self._record("MODIFIED", resource, new)
            result = copy.deepcopy(new)
        self._dispatch()
        return result

    def delete(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Remove an object now (no grace, no finalizers); returns it. 404 ApiError if absent."""
        with self._lock:
            bucket = self._objects.get(resource, {})
            obj = bucket.pop((namespace or "", name), None)
            if obj is None:
                raise errors.not_found(self.registry.by_key(resource), name)
            self._rv += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._side.pop(gone["metadata"].get("uid", ""), None)
            self._record("DELETED", resource, gone)
            result = copy.deepcopy(gone)
        self._dispatch()
        return result

    def side_state(self, uid: str) -> dict[str, Any]:
        """Per-object state the server keeps outside the object (server-side apply's last applied configs)."""
        with self._lock:
            return self._side.setdefault(uid, {})

    # --- events -------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> None:
        """``callback(type, resource, object)`` after every change, in order, outside the store's lock."""
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def watch(self, resource: str, namespace: str | None, since: int | None, sink: Sink) -> tuple[int, list]:
        """Register ``sink`` for future events of ``resource``; returns (handle, past events to send first).

        ``since`` None: ADDED for every current object; else the recorded events after that version
        (410 Expired when they are no longer recorded)."""
        with self._lock:
            if since is None:
                items = self._objects.get(resource, {})
                backlog = [(self._rv, "ADDED", items[k]) for k in sorted(items)
                           if namespace is None or k[0] == namespace]
            else:
                if since < self._rv and self._history and self._history[0][0] > since + 1:
                    raise errors.ApiError(410, f"too old resource version: {since} ({self._rv})", "Expired")
                backlog = [(rv, t, o) for rv, t, r, o in self._history
                           if rv > since and r == resource
                           and (namespace is None or o["metadata"].get("namespace", "") == namespace)]
            self._next_sink += 1
            self._sinks[self._next_sink] = (resource, namespace, sink)
            return self._next_sink, backlog

    def unwatch(self, handle: int) -> None:
        with self._lock:
            self._sinks.pop(handle, None)

    def _record(self, event: str, resource: str, obj: dict[str, Any]) -> None:
        self._history.append((self._rv, event, resource, obj))
        namespace = obj["metadata"].get("namespace", "")
        for wanted, ns, sink in list(self._sinks.values()):
            if wanted == resource and (ns is None or ns == namespace):
                sink(self._rv, event, obj)
        if self._subscribers:
            self._pending.append((event, resource, obj))

    def _dispatch(self) -> None:
        """Deliver pending events to subscribers in order, never nested and never blocking a writer.

        Whoever holds the dispatch lock drains the queue; a writer that finds it taken leaves its events to it."""
        if getattr(self._dispatching, "active", False):
            return
        while True:
            with self._lock:
                if not self._pending:
                    return
            if not self._dispatch_lock.acquire(blocking=False):
                return
            self._dispatching.active = True
            try:
                while True:
                    with self._lock:
                        if not self._pending:
                            break
                        event, resource, obj = self._pending.popleft()
                        subscribers = list(self._subscribers)
                    for callback in subscribers:
                        try:
                            callback(event, resource, copy.deepcopy(obj))
                        except Exception:  # one broken subscriber must not stop the others or the writer
                            log.exception("store subscriber %r failed on %s %s", callback, event, resource)
            finally:
                self._dispatching.active = False
                self._dispatch_lock.release()
