"""The four PATCH flavours: strategic merge (built-in kinds), JSON merge (RFC 7386), JSON patch (RFC 6902),
and apply (server-side apply, as a three-way merge against the manager's previous configuration)."""

from __future__ import annotations

import copy
from typing import Any

from rehearsal.apiserver.errors import ApiError

#: list fields merged item by item (patchStrategy merge) and their merge key; others are replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "webhooks": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "readinessGates": "conditionType",
    "topologySpreadConstraints": "topologyKey",
    "ports": "containerPort|port",
}
#: primitive lists merged as sets.
MERGED_PRIMITIVES = {"finalizers"}
_ORDER, _DELETE_FROM = "$setElementOrder/", "$deleteFromPrimitiveList/"


def _merge_key(field: str, items: list[Any]) -> str | None:
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(i, dict) for i in items):
        return None
    if "|" in key:  # container ports are keyed by containerPort, service ports by port
        first, second = key.split("|")
        return first if any(first in i for i in items) else second
    return key


def _clean(value: Any) -> Any:
    """A patch value with its directives removed (as it lands when there is nothing to merge with)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()
                if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return value


def _order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    wanted = [o.get(key) if key and isinstance(o, dict) else o for o in order]
    position = {value: index for index, value in enumerate(wanted) if isinstance(value, (str, int, float))}

    def rank(pair: tuple[int, Any]) -> tuple[int, int]:
        index, item = pair
        value = item.get(key) if key and isinstance(item, dict) else item
        return (position.get(value, len(position)), index) if isinstance(value, (str, int, float)) else (
            len(position), index)

    return [item for _, item in sorted(enumerate(items), key=rank)]


def _merge_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_clean(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    if field in MERGED_PRIMITIVES and all(not isinstance(p, (dict, list)) for p in patch):
        return original + [p for p in patch if p not in original]
    key = _merge_key(field, original + patch)
    if key is None:
        return _clean(patch)
    result = list(original)
    for item in patch:
        value = item.get(key)
        index = next((i for i, o in enumerate(result) if o.get(key) == value), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(_clean(item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def strategic_merge(original: Any, patch: Any) -> Any:
    """Apply a strategic-merge patch: null deletes, maps merge, lists of named items merge by their key,
    with ``$patch: replace|delete|merge``, ``$retainKeys``, ``$setElementOrder/…``, ``$deleteFromPrimitiveList/…``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(original, dict):
        original = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return _clean(patch)
    if directive == "delete":
        return None
    result = copy.deepcopy(original)
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith(_ORDER):
            orders[key[len(_ORDER):]] = value
        elif key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM):]
            result[field] = [v for v in result.get(field, []) if v not in value]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(key, current if isinstance(current, list) else [], value)
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _order(result[field], order, _merge_key(field, result[field] + order))
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"])  # a union's members: the others are cleared
        result = {k: v for k, v in result.items() if k in keep}
    return result


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    target = doc
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    return target, parts[-1]


def json_patch(original: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(original)
    try:
        for op in operations:
            kind, parts = op["op"], _pointer(op["path"])
            if kind in ("move", "copy"):
                source, last = _parent(doc, _pointer(op["from"]))
                value = source[int(last)] if isinstance(source, list) else source[last]
                if kind == "move":
                    del source[int(last) if isinstance(source, list) else last]
                op = {"op": "add", "path": op["path"], "value": copy.deepcopy(value)}
                kind = "add"
            if not parts:
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(op["value"])
                continue
            parent, last = _parent(doc, parts)
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op["value"]:
                    raise ApiError(422, f"the server rejected our request due to an error in our request: test "
                                        f"failed at {op['path']}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "add" and isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op["value"])
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = copy.deepcopy(op["value"])
            else:
                raise ApiError(422, f"unknown JSON patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from None
    return doc


def removals(previous: Any, applied: Any, strategic: bool, field: str = "") -> Any:
    """``applied`` plus deletions of what ``previous`` set and ``applied`` no longer does (a three-way patch)."""
    if not isinstance(applied, dict) or not isinstance(previous, dict):
        if strategic and isinstance(applied, list) and isinstance(previous, list):
            key = _merge_key(field, previous + applied)
            if key:
                kept = {a.get(key) for a in applied}
                out = [removals(next((p for p in previous if p.get(key) == a.get(key)), None), a, True)
                       for a in applied]
                return out + [{key: p.get(key), "$patch": "delete"} for p in previous if p.get(key) not in kept]
        return copy.deepcopy(applied)
    out = {k: removals(previous.get(k), v, strategic, k) for k, v in applied.items()}
    for key in previous:
        if key not in applied and key not in ("apiVersion", "kind"):
            out[key] = None
    return out
