"""Label and field selectors as kubectl sends them (``=``, ``==``, ``!=``, ``in``, ``notin``, exists, ``!``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rehearsal.apiserver.errors import ApiError

Matcher = Callable[[Mapping[str, Any]], bool]
_SET = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*$")


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    if current.strip():
        parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(term: str) -> Callable[[Mapping[str, str]], bool]:
    if m := _SET.match(term):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP.match(term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(term):
        negate, key = m.groups()
        return (lambda labels: key not in labels) if negate else (lambda labels: key in labels)
    raise ApiError(400, f"unable to parse requirement: {term.strip()!r}")


def label_matcher(selector: str | None) -> Matcher:
    """Matcher of objects by ``metadata.labels``; empty selector matches everything."""
    if not selector:
        return lambda obj: True
    requirements = [_requirement(term) for term in _split(selector)]

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in requirements)

    return match


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def field_matcher(selector: str | None) -> Matcher:
    """Matcher on ``metadata.name``, ``metadata.namespace`` and other dotted fields (``=``, ``==``, ``!=``)."""
    if not selector:
        return lambda obj: True
    terms = []
    for term in _split(selector):
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise ApiError(400, f"invalid field selector: {term.strip()!r}")
        terms.append(m.groups())

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_field(obj, path) == value) != (op == "!=") for path, op, value in terms)

    return match


def field_value(selector: str | None, path: str) -> str | None:
    """The value an equality field selector requires for ``path`` (e.g. ``metadata.name``), if any."""
    for term in _split(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|=)\s*(.*?)\s*$", term)
        if m and m.group(1) == path:
            return m.group(3)
    return None
