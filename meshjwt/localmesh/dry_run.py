"""What the local reference mesh makes of Istio resources, without starting anything: each resource it refuses
and why, by the same checks an apply makes (Istio's validation webhook, then the translation istiod would do).

``meshjwt validate`` reports these; the playground and the local target refuse the same resources when they apply
them, since both go through :func:`meshjwt.localmesh.validation.check` and :meth:`ControlPlane.translate`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshjwt.errors import ApplyRefused, ConfigError, UnsupportedField
from meshjwt.localmesh.control_plane import ControlPlane
from meshjwt.localmesh.jwks_fetch import FetchResult
from meshjwt.localmesh.jwks_resolver import JwksResolver
from meshjwt.localmesh.topology import BACKENDS, build, sample_topology
from meshjwt.localmesh.translate.selection import check_targeting, resource_id
from meshjwt.localmesh.validation import check as webhook_check
from meshjwt.localmesh.validation import jwt_rule_errors

#: a field path in a refusal: ``spec.rules[0].from[0].source.ipBlocks``
_FIELD = re.compile(r"\b(?:spec|metadata|tls|jwtRules)(?:\.[A-Za-z_][\w-]*|\[\d+\])*")


def field_of(message: str) -> str | None:
    """The first field path a refusal names (``spec.…``), or None."""
    found = _FIELD.search(message.split(": ", 1)[1] if ": " in message else message)
    return found.group(0) if found else None


def _control_plane() -> ControlPlane:
    """The local mesh's control plane over its modelled world, with ports that are never opened and an istiod that
    fetches nothing (a JWKS the real run would fetch does not change whether a resource is accepted)."""
    listeners = {"sidecar": 1, "productpage-sidecar": 2, "gateway": 3}
    world, proxies, clusters = build(sample_topology(), listeners, {name: 10 + i for i, name in enumerate(BACKENDS)})
    plane = ControlPlane(world, proxies, clusters, "/nonexistent/ca.pem", '{"keys": []}')
    plane.resolver = JwksResolver(lambda uri, issuer, timeout: FetchResult(None, "not fetched"))  # never start()ed
    return plane


def refusals(resources: Sequence[Mapping[str, Any]], fetch_mode: str = "istiod") -> list[tuple[int | None, str]]:
    """(index of the resource, why) for each resource the local mesh refuses; index None when the refusal names no
    single resource. Together, as one apply: a refused resource is set aside and the rest translated again."""
    found: list[tuple[int | None, str]] = []
    remaining = list(range(len(resources)))
    for index in list(remaining):
        try:
            webhook_check(resources[index])
            check_targeting(resources[index])
        except ApplyRefused as exc:
            found.append((index, _with_rule(resources[index], str(exc))))
            remaining.remove(index)
        except (UnsupportedField, ConfigError) as exc:
            found.append((index, str(exc)))
            remaining.remove(index)
    plane = _control_plane()
    while remaining:
        try:
            plane.translate([copy.deepcopy(dict(resources[i])) for i in remaining], fetch_mode)
            break
        except (UnsupportedField, ConfigError, ValueError, KeyError, TypeError) as exc:
            message = str(exc) if isinstance(exc, (UnsupportedField, ConfigError)) else f"cannot translate: {exc!r}"
            culprit = next((i for i in remaining if _names(message, resources[i])), None)
            found.append((culprit, message))
            if culprit is None:
                break
            remaining.remove(culprit)
    return sorted(found, key=lambda item: -1 if item[0] is None else item[0])


def _with_rule(resource: Mapping[str, Any], message: str) -> str:
    """The webhook's refusal, naming the first jwtRule it refuses (``spec.jwtRules[N]``)."""
    rules = (resource.get("spec") or {}).get("jwtRules") or []
    bad = next((i for i, rule in enumerate(rules) if isinstance(rule, Mapping) and jwt_rule_errors(rule)), None)
    if bad is None:
        return message
    ident, _, rest = message.partition(": ")
    return f"{ident}: spec.jwtRules[{bad}] is refused by Istio's validation webhook: {rest}"


def _names(message: str, resource: Mapping[str, Any]) -> bool:
    """Whether ``message`` is about ``resource`` (it names ``Kind namespace/name``, or ``Kind`` and the name)."""
    meta = resource.get("metadata") or {}
    ident = resource_id({**resource, "metadata": {"namespace": "default", **meta}})
    return ident in message or (f"{resource.get('kind')} " in message and f"/{meta.get('name')}" in message) or (
        not isinstance(meta, Mapping) or not meta.get("name")
    )
