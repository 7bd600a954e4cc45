"""Tenants by bearer token, the authorization decision, and SelfSubjectAccessReview bodies (JSON or protobuf)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rehearsal.apiserver import protobuf
from rehearsal.apiserver.errors import ApiError

PROTOBUF_MAGIC = protobuf.MAGIC


@dataclass(frozen=True)
class Tenant:
    """A caller: may do anything in namespaces named with one of its prefixes, nothing cluster-wide."""

    user: str
    namespace_prefixes: tuple[str, ...]
    may_create_namespaces: bool = True

    def owns(self, namespace: str | None) -> bool:
        return bool(namespace) and any(str(namespace).startswith(p) for p in self.namespace_prefixes)


@dataclass(frozen=True)
class Attributes:
    """What a request does, as RBAC sees it."""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def allowed(tenant: Tenant | None, attrs: Attributes) -> bool:
    """The decision: no tenant (open server) allows everything."""
    if tenant is None:
        return True
    if attrs.group == "" and attrs.resource == "namespaces":
        if not attrs.name and attrs.verb in ("create", "delete"):
            return tenant.may_create_namespaces  # can-i without a name: the name is checked on the request
        if not tenant.owns(attrs.name):
            return False
        return attrs.verb in ("get", "list", "watch") or tenant.may_create_namespaces
    if attrs.group == "authorization.k8s.io" and attrs.resource.startswith("self"):
        return True
    return tenant.owns(attrs.namespace)


def review_spec(body: bytes, content_type: str) -> dict[str, Any]:
    """``spec`` of a SelfSubjectAccessReview, from JSON or from the protobuf envelope kubectl 1.32 sends."""
    try:
        if body.startswith(PROTOBUF_MAGIC) or "protobuf" in content_type:
            return protobuf.access_review_spec(body)
        return dict(json.loads(body or b"{}").get("spec") or {})
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ApiError(400, f"cannot decode SelfSubjectAccessReview: {exc}") from None


def review_answer(spec: Mapping[str, Any], tenant: Tenant | None) -> dict[str, Any]:
    """The SelfSubjectAccessReview the server returns (JSON)."""
    res = spec.get("resourceAttributes")
    if res:
        resource, _, sub = str(res.get("resource", "")).partition("/")
        attrs = Attributes(str(res.get("verb", "")), str(res.get("group", "")), resource,
                           str(res.get("namespace", "")), str(res.get("name", "")), str(res.get("subresource", sub)))
        ok = allowed(tenant, attrs)
    else:
        ok = True  # non-resource URLs (discovery, version) are open to every authenticated caller
    status: dict[str, Any] = {"allowed": ok}
    if not ok:
        status["reason"] = ""
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": dict(spec), "status": status}
