"""The kinds the stand-in serves: a built-in table plus CRD-defined kinds, and the discovery documents."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Kind:
    """One served resource: where it lives in the API and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "exec", "log", "scale"
    versions: tuple[str, ...] = ()  # every served version (CRDs); empty: just ``version``
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    builtin: bool = True
    categories: tuple[str, ...] = field(default=())
    generation: bool = False  # metadata.generation, bumped on changes outside metadata and status


    @property
    def key(self) -> str:
        """``pods``, ``deployments.apps``: the store's name for this resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def served(self, version: str) -> bool:
        return version in (self.versions or (self.version,))


def _k(group: str, version: str, plural: str, kind: str, namespaced: bool, *extra: Any, **kw: Any) -> Kind:
    return Kind(group, version, plural, kind, namespaced, *extra, **kw)


CREATE_ONLY = ("create",)
BUILTIN: tuple[Kind, ...] = (
    _k("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
    _k("", "v1", "pods", "Pod", True, ("po",), ("status", "exec", "log"), categories=("all",)),
    _k("", "v1", "services", "Service", True, ("svc",), ("status",), categories=("all",)),
    _k("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _k("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _k("", "v1", "secrets", "Secret", True),
    _k("", "v1", "events", "Event", True, ("ev",)),
    _k("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    _k("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _k("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), categories=("all",),
       generation=True),
    _k("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), categories=("all",),
       generation=True),
    _k("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
       ("crd", "crds"), ("status",), generation=True),
    _k("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration",
       False, generation=True),
    _k("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration",
       False, generation=True),
    _k("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _k("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _k("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _k("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _k("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
       verbs=CREATE_ONLY),
)

#: subresource → (kind reported in discovery, verbs)
SUBRESOURCE_INFO = {
    "status": (None, ("get", "patch", "update")),
    "scale": ("Scale", ("get", "patch", "update")),
    "exec": ("PodExecOptions", ("create", "get")),
    "log": ("Pod", ("get",)),
    "finalize": (None, ("update",)),
}


class NotServed(LookupError):
    """No such resource (or version) on this server."""


class Registry:
    """Built-in kinds plus the kinds CRDs define; thread-safe, and versioned for discovery caches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, Kind] = {k.key: k for k in BUILTIN}
        self.generation = 0  # bumped when a CRD kind appears or goes

    def all(self) -> list[Kind]:
        with self._lock:
            return list(self._kinds.values())

    def by_key(self, key: str) -> Kind:
        with self._lock:
            if key in self._kinds:
                return self._kinds[key]
        raise NotServed(f"the server doesn't have a resource type {key!r}")

    def by_path(self, group: str, version: str, plural: str) -> Kind:
        """Kind of ``/api[s]/G/V/plural``; NotServed if absent or the version is not served."""
        key = f"{plural}.{group}" if group else plural
        kind = self.by_key(key)
        if not kind.served(version):
            raise NotServed(key)
        return kind

    def by_api_version(self, api_version: str, kind_name: str) -> Kind:
        """Kind of an object's ``apiVersion`` + ``kind``."""
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for kind in self._kinds.values():
                if kind.group == group and kind.kind == kind_name and kind.served(version):
                    return kind
        raise NotServed(f'no matches for kind "{kind_name}" in version "{api_version}"')

    def add_crd(self, crd: dict[str, Any]) -> Kind:
        """Serve the kind a CustomResourceDefinition defines."""
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        served = [v for v in spec.get("versions", []) if v.get("served", True)]
        storage = next((v for v in served if v.get("storage")), served[0] if served else {"name": "v1"})
        subresources = tuple(k for k in ("status", "scale") if k in (storage.get("subresources") or {}))
        kind = Kind(
            group=spec.get("group", ""),
            version=storage["name"],
            plural=names.get("plural", ""),
            kind=names.get("kind", ""),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames", []) or ()),
            subresources=subresources,
            versions=tuple(v["name"] for v in served),
            builtin=False,
            categories=tuple(names.get("categories", []) or ()),
            generation=True,
        )
        with self._lock:
            if self._kinds.get(kind.key) != kind:
                self._kinds[kind.key] = kind
                self.generation += 1
        return kind

    def remove_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        key = f"{spec.get('names', {}).get('plural', '')}.{spec.get('group', '')}"
        with self._lock:
            if key in self._kinds and not self._kinds[key].builtin:
                del self._kinds[key]
                self.generation += 1

    # --- discovery documents ------------------------------------------------------------
    def group_versions(self) -> dict[str, list[str]]:
        """group → served versions, preferred (storage) first; core group excluded."""
        groups: dict[str, list[str]] = {}
        for kind in self.all():
            if not kind.group:
                continue
            versions = groups.setdefault(kind.group, [])
            for version in (kind.version, *kind.versions):
                if version not in versions:
                    versions.append(version)
        return groups

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": listed, "preferredVersion": listed[0]}

    def api_group_list(self) -> dict[str, Any]:
        groups = [self.api_group(g) for g in sorted(self.group_versions())]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """``APIResourceList`` of ``/api/v1`` or ``/apis/G/V`` (None if nothing is served there)."""
        resources: list[dict[str, Any]] = []
        for kind in sorted(self.all(), key=lambda k: k.plural):
            if kind.group != group or not kind.served(version):
                continue
            entry: dict[str, Any] = {
                "name": kind.plural,
                "singularName": kind.singular,
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": list(kind.verbs),
            }
            if kind.short_names:
                entry["shortNames"] = list(kind.short_names)
            if kind.categories:
                entry["categories"] = list(kind.categories)
            resources.append(entry)
            for sub in kind.subresources:
                sub_kind, verbs = SUBRESOURCE_INFO[sub]
                resources.append(
                    {
                        "name": f"{kind.plural}/{sub}",
                        "singularName": "",
                        "namespaced": kind.namespaced,
                        "kind": sub_kind or kind.kind,
                        "verbs": list(verbs),
                    }
                )
        if not resources:
            return None
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    def openapi_v3_index(self, hash_: str) -> dict[str, Any]:
        paths = {"api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={hash_}"}}
        for group, versions in sorted(self.group_versions().items()):
            for version in versions:
                url = f"/openapi/v3/apis/{group}/{version}?hash={hash_}"
                paths[f"apis/{group}/{version}"] = {"serverRelativeURL": url}
        return {"paths": paths}

    def openapi_v3_doc(self, group: str, version: str) -> dict[str, Any] | None:
        """A stub document: each kind's PATCH operation, carrying its GVK and the fieldValidation parameter.

        That is all kubectl's strict validation looks for before it leaves validation to the server."""
        paths: dict[str, Any] = {}
        for kind in self.all():
            if kind.group != group or not kind.served(version) or "patch" not in kind.verbs:
                continue
            prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
            scope = "/namespaces/{namespace}" if kind.namespaced else ""
            paths[f"{prefix}{scope}/{kind.plural}/{{name}}"] = {
                "patch": {
                    "operationId": f"patch{kind.kind}",
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind.kind},
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        if not paths:
            return None
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "unversioned"}, "paths": paths,
                "components": {"schemas": {}}}
