"""A tiny protobuf wire-format reader, and the few bodies kubectl's typed clients send as protobuf:
SelfSubjectAccessReview (``kubectl auth can-i``), Namespace, ConfigMap and Secret (``kubectl create …``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"  # envelope: magic + runtime.Unknown{typeMeta=1{apiVersion=1, kind=2}, raw=2}


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
    """(field number, value) of a message, in order: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, data[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, data[pos:pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")


def message(data: bytes) -> dict[int, list[int | bytes]]:
    """Field number → every value it has (repeated fields keep their order)."""
    out: dict[int, list[int | bytes]] = {}
    for number, value in fields(data):
        out.setdefault(number, []).append(value)
    return out


def text(msg: dict[int, list[Any]], number: int) -> str | None:
    values = msg.get(number)
    return values[-1].decode() if values else None


def _map(msg: dict[int, list[Any]], number: int, decode: bool = True) -> dict[str, Any]:
    out = {}
    for entry in msg.get(number, []):
        item = message(entry)
        key = text(item, 1) or ""
        raw = item.get(2, [b""])[-1]
        out[key] = raw.decode() if decode else base64.b64encode(raw).decode()
    return out


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw object) of an enveloped body."""
    unknown = message(body[len(MAGIC):] if body.startswith(MAGIC) else body)
    type_meta = message(unknown.get(1, [b""])[-1])
    return text(type_meta, 1) or "", text(type_meta, 2) or "", unknown.get(2, [b""])[-1]


def object_meta(data: bytes) -> dict[str, Any]:
    msg = message(data)
    meta: dict[str, Any] = {}
    for number, name in ((1, "name"), (2, "generateName"), (3, "namespace")):
        if value := text(msg, number):
            meta[name] = value
    for number, name in ((11, "labels"), (12, "annotations")):
        if values := _map(msg, number):
            meta[name] = values
    if finalizers := [f.decode() for f in msg.get(14, [])]:
        meta["finalizers"] = finalizers
    return meta


def decode_object(body: bytes) -> dict[str, Any]:
    """A Namespace, ConfigMap or Secret from its protobuf envelope; ValueError for any other kind."""
    api_version, kind, raw = unwrap(body)
    msg = message(raw)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind,
                           "metadata": object_meta(msg.get(1, [b""])[-1])}
    if kind == "Namespace":
        spec = message(msg.get(2, [b""])[-1])
        if finalizers := [f.decode() for f in spec.get(1, [])]:
            obj["spec"] = {"finalizers": finalizers}
    elif kind == "ConfigMap":
        if data := _map(msg, 2):
            obj["data"] = data
        if binary := _map(msg, 3, decode=False):
            obj["binaryData"] = binary
    elif kind == "Secret":
        if data := _map(msg, 2, decode=False):
            obj["data"] = data
        if secret_type := text(msg, 3):
            obj["type"] = secret_type
        if string_data := _map(msg, 4):
            obj["stringData"] = string_data
    else:
        raise ValueError(f"{kind or 'this kind'} sent as protobuf")
    return obj


RESOURCE_ATTRIBUTES = ("namespace", "verb", "group", "version", "resource", "subresource", "name")


def access_review_spec(body: bytes) -> dict[str, Any]:
    """``spec`` of an enveloped SelfSubjectAccessReview
    (spec=2{resourceAttributes=1{namespace=1 … name=7}, nonResourceAttributes=2{path=1, verb=2}})."""
    _, _, raw = unwrap(body)
    spec = message(message(raw).get(2, [b""])[-1])
    out: dict[str, Any] = {}
    if 1 in spec:
        attrs = message(spec[1][-1])
        out["resourceAttributes"] = {name: text(attrs, i + 1) for i, name in enumerate(RESOURCE_ATTRIBUTES)
                                     if i + 1 in attrs}
    if 2 in spec:
        attrs = message(spec[2][-1])
        out["nonResourceAttributes"] = {k: text(attrs, i) for i, k in ((1, "path"), (2, "verb")) if i in attrs}
    return out
