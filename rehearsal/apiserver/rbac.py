"""Tenants by bearer token, the authorization decision, and SelfSubjectAccessReview bodies (JSON or protobuf)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rehearsal.apiserver.errors import ApiError

PROTOBUF_MAGIC = b"k8s\x00"


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
        if not tenant.owns(attrs.name):
            return False
        return attrs.verb in ("get", "list", "watch") or tenant.may_create_namespaces
    if attrs.group == "authorization.k8s.io" and attrs.resource.startswith("self"):
        return True
    return tenant.owns(attrs.namespace)


# --- protobuf wire format, just enough for SelfSubjectAccessReview ---------------------------------
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield number, data[pos:pos + length]
            pos += length
        elif wire == 1:
            yield number, data[pos:pos + 8]
            pos += 8
        elif wire == 5:
            yield number, data[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _message(data: bytes) -> dict[int, bytes]:
    return {n: v for n, v in fields(data) if isinstance(v, bytes)}


RESOURCE_ATTRIBUTES = ("namespace", "verb", "group", "version", "resource", "subresource", "name")


def review_spec(body: bytes, content_type: str) -> dict[str, Any]:
    """``spec`` of a SelfSubjectAccessReview, from JSON or from the protobuf envelope kubectl 1.32 sends."""
    try:
        if body.startswith(PROTOBUF_MAGIC) or "protobuf" in content_type:
            unknown = _message(body[len(PROTOBUF_MAGIC):] if body.startswith(PROTOBUF_MAGIC) else body)
            review = _message(unknown.get(2, b""))  # runtime.Unknown.raw
            spec = _message(review.get(2, b""))
            out: dict[str, Any] = {}
            if 1 in spec:
                attrs = _message(spec[1])
                out["resourceAttributes"] = {
                    name: attrs[i + 1].decode() for i, name in enumerate(RESOURCE_ATTRIBUTES) if i + 1 in attrs
                }
            if 2 in spec:
                attrs = _message(spec[2])
                out["nonResourceAttributes"] = {k: attrs[i].decode() for i, k in ((1, "path"), (2, "verb"))
                                                if i in attrs}
            return out
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
