"""A thin in-process Kubernetes API stand-in for the istioctl stand-in's tests (discovery, get/create/merge-patch).

Only what the dynamic client needs for create-or-update is answered; Deployments become ready after a
number of reads (or never). The real simulated API server is ``rehearsal.apiserver`` (integrated by
the lead); this stub only lets the CLI's Kubernetes path run here.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

#: (group, version) → kind → (plural, namespaced)
BUILTIN: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {
    ("", "v1"): {
        "Namespace": ("namespaces", False),
        "ServiceAccount": ("serviceaccounts", True),
        "ConfigMap": ("configmaps", True),
        "Service": ("services", True),
    },
    ("apps", "v1"): {"Deployment": ("deployments", True)},
    ("autoscaling", "v2"): {"HorizontalPodAutoscaler": ("horizontalpodautoscalers", True)},
    ("rbac.authorization.k8s.io", "v1"): {
        "ClusterRole": ("clusterroles", False),
        "ClusterRoleBinding": ("clusterrolebindings", False),
        "Role": ("roles", True),
        "RoleBinding": ("rolebindings", True),
    },
    ("admissionregistration.k8s.io", "v1"): {
        "MutatingWebhookConfiguration": ("mutatingwebhookconfigurations", False),
        "ValidatingWebhookConfiguration": ("validatingwebhookconfigurations", False),
    },
    ("apiextensions.k8s.io", "v1"): {"CustomResourceDefinition": ("customresourcedefinitions", False)},
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class StubApi:
    """Serve on 127.0.0.1:<free port>; ``ready_after`` reads of a Deployment make it ready (None: never)."""

    def __init__(self, ready_after: int | None = 1, forbid: frozenset[str] = frozenset()) -> None:
        self.ready_after = ready_after
        self.forbid = forbid  # plurals whose creation is refused with 403
        self.objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.reads: dict[tuple[str, ...], int] = {}
        self.requests: list[tuple[str, str]] = []
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def do_GET(self) -> None:
                self._send(*stub.handle("GET", self.path, None))

            def do_POST(self) -> None:
                self._send(*stub.handle("POST", self.path, self._body()))

            def do_PATCH(self) -> None:
                assert self.headers.get("Content-Type") == "application/merge-patch+json", self.headers
                self._send(*stub.handle("PATCH", self.path, self._body()))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
                    "users": [{"name": "stub", "user": {"token": "stub"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                    "current-context": "stub",
                }
            )
        )
        return path

    # --- discovery -----------------------------------------------------------------------------
    def kinds(self) -> dict[tuple[str, str], dict[str, tuple[str, bool]]]:
        out = {gv: dict(kinds) for gv, kinds in BUILTIN.items()}
        for (_group, _, plural, _, _), obj in list(self.objects.items()):
            if plural != "customresourcedefinitions":
                continue
            spec = obj["spec"]
            for version in spec["versions"]:
                out.setdefault((spec["group"], version["name"]), {})[spec["names"]["kind"]] = (
                    spec["names"]["plural"],
                    spec["scope"] == "Namespaced",
                )
        return out

    def _discovery(self, path: str) -> dict[str, Any] | None:
        kinds = self.kinds()
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for group, version in kinds:
                if group:
                    groups.setdefault(group, []).append(version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        parts = path.strip("/").split("/")
        gv = ("", "v1") if parts == ["api", "v1"] else (parts[1], parts[2]) if len(parts) == 3 else None
        if gv is None or parts[0] not in ("api", "apis") or gv not in kinds:
            return None
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        return {
            "kind": "APIResourceList",
            "groupVersion": "/".join(p for p in gv if p),
            "resources": [
                {"name": plural, "singularName": "", "namespaced": ns, "kind": kind, "verbs": verbs}
                for kind, (plural, ns) in kinds[gv].items()
            ],
        }

    # --- objects -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        path = path.split("?", 1)[0]
        with self._lock:
            self.requests.append((method, path))
            if method == "GET":
                found = self._discovery(path)
                if found is not None:
                    return 200, found
            parts = path.strip("/").split("/")
            if parts[0] == "api":
                group, version, rest = "", parts[1], parts[2:]
            else:
                group, version, rest = parts[1], parts[2], parts[3:]
            namespace = ""
            if len(rest) >= 3 and rest[0] == "namespaces":
                namespace, rest = rest[1], rest[2:]
            plural, name = rest[0], (rest[1] if len(rest) > 1 else (body or {}).get("metadata", {}).get("name", ""))
            key = (group, version, plural, namespace, name)
            current = self.objects.get(key)
            if method == "GET":
                if current is None:
                    return 404, {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                    }
                if plural == "deployments":
                    self.reads[key] = self.reads.get(key, 0) + 1
                    if self.ready_after is not None and self.reads[key] >= self.ready_after:
                        replicas = current["spec"].get("replicas", 1)
                        current["status"] = {
                            "observedGeneration": current["metadata"]["generation"],
                            "replicas": replicas,
                            "updatedReplicas": replicas,
                            "readyReplicas": replicas,
                            "availableReplicas": replicas,
                        }
                return 200, current
            assert body is not None
            if method == "POST" and plural in self.forbid:
                return 403, {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403}
            if method == "POST" and current is not None:
                return 409, {"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409}
            if method == "PATCH":
                if current is None:
                    return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
                body = merge_patch(current, body)
            meta = body.setdefault("metadata", {})
            meta["resourceVersion"] = str(next(self._versions))
            meta["generation"] = (current or {}).get("metadata", {}).get("generation", 0) + 1
            if namespace:
                meta["namespace"] = namespace
            self.objects[key] = body
            return (201 if method == "POST" else 200), body

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        for (_, _, _plural, ns, n), obj in self.objects.items():
            if obj.get("kind") == kind and n == name and ns == namespace:
                return obj
        return None
