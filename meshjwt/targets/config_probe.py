"""No verdict on stale config: after an apply, wait until each affected proxy's config shows it.

What a proxy must show is read from the applied resources, as istiod would program it: the RBAC
policy names istiod gives each AuthorizationPolicy rule (``ns[NS]-policy[NAME]-rule[I]``), and the
issuers (with audiences) of the RequestAuthentications selecting that proxy. The proxy's config
comes from ``pilot-agent request GET config_dump`` in its ``istio-proxy`` container — on any Istio,
no feature flag needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from meshjwt.localmesh.translate.selection import applies_to
from meshjwt.localmesh.world import Workload

CONFIG_DUMP = ["pilot-agent", "request", "GET", "config_dump"]


@dataclass(frozen=True)
class Fingerprint:
    """What of the JWT/authz config a proxy runs: RBAC policy names and (issuer, audiences) providers."""

    policies: frozenset[str]
    providers: frozenset[tuple[str, tuple[str, ...]]]
    NONE: ClassVar[Fingerprint]

    def differences(self, running: Fingerprint) -> list[str]:
        """What ``running`` lacks or has too much, one phrase each (empty: it shows this fingerprint)."""
        out = [f"missing {p}" for p in sorted(self.policies - running.policies)]
        out += [f"stale {p}" for p in sorted(running.policies - self.policies)]
        out += [f"missing issuer {i}" for i, _ in sorted(self.providers - running.providers)]
        out += [f"stale issuer {i}" for i, _ in sorted(running.providers - self.providers)]
        return out


Fingerprint.NONE = Fingerprint(frozenset(), frozenset())


def expected(resources: Sequence[Mapping[str, Any]], workload: Workload, root_namespace: str) -> Fingerprint:
    """The fingerprint istiod programs into ``workload``'s proxy for ``resources``."""
    policies: set[str] = set()
    providers: set[tuple[str, tuple[str, ...]]] = set()
    for resource in resources:
        kind = resource.get("kind")
        if kind not in ("AuthorizationPolicy", "RequestAuthentication") or not applies_to(
            resource, workload, root_namespace
        ):
            continue
        meta, spec = resource.get("metadata") or {}, resource.get("spec") or {}
        if kind == "AuthorizationPolicy":
            if spec.get("action", "ALLOW") == "CUSTOM":  # ext_authz: not modelled here
                continue
            rules = spec.get("rules") or [None]
            name = f"ns[{meta.get('namespace')}]-policy[{meta.get('name')}]"
            policies.update(f"{name}-rule[{i}]" for i in range(len(rules)))
        else:
            for rule in spec.get("jwtRules") or []:
                providers.add((str(rule.get("issuer", "")), tuple(sorted(rule.get("audiences") or []))))
    return Fingerprint(frozenset(policies), frozenset(providers))


def _walk(node: Any, refused: bool = False) -> Iterator[Mapping[str, Any]]:
    """Every mapping under ``node``: outside the ``error_state`` of listeners (a refused update), or only there."""
    if isinstance(node, Mapping):
        if refused and "failed_configuration" in node:
            yield from _walk(node["failed_configuration"])
            return
        if not refused:
            yield node
        for key, value in node.items():
            if key != "error_state" or refused:
                yield from _walk(value, refused)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, refused)


def running(config_dump: str) -> Fingerprint:
    """The fingerprint of a proxy's ``config_dump`` (every listener's jwt_authn and RBAC filters in force)."""
    return _fingerprint(_walk(json.loads(config_dump)))


def refused(config_dump: str) -> Fingerprint:
    """The fingerprint of the updates the proxy refused (``error_state.failed_configuration`` of its listeners,
    e.g. a jwt_authn whose inline JWKS is no JWKS): istiod delivered them, the proxy keeps its previous config."""
    return _fingerprint(_walk(json.loads(config_dump), refused=True))


def _fingerprint(nodes: Iterator[Mapping[str, Any]]) -> Fingerprint:
    policies: set[str] = set()
    providers: set[tuple[str, tuple[str, ...]]] = set()
    for node in nodes:
        kind = str(node.get("@type", ""))
        if kind.endswith("rbac.v3.RBAC"):
            for rules in (node.get("rules"), node.get("shadow_rules"), node.get("shadowRules")):
                policies.update((rules or {}).get("policies", {}).keys())
        elif kind.endswith("jwt_authn.v3.JwtAuthentication"):
            for provider in (node.get("providers") or {}).values():
                providers.add((str(provider.get("issuer", "")), tuple(sorted(provider.get("audiences") or []))))
    return Fingerprint(frozenset(policies), frozenset(providers))
