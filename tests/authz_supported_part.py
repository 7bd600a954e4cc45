"""The supported part of an Istio authz golden pair: refused fields out of the input, their matchers out of the output.

The local mesh refuses fields that need a real mesh (mTLS identities, pod addresses, workload ports, SNI,
experimental metadata). To still compare everything else of an input with istiod's output — above all
the JWT matchers — :func:`strip_input` removes exactly those fields and says which Envoy matcher kinds
istiod made of them; :func:`strip_output` removes exactly those matchers from the golden filter. Three
rules keep this honest:

- a matcher is removed only if *every* leaf under it is of a stripped kind (a mixed one is an error);
- a ``from``/``to`` entry that loses all its fields is dropped from the input, and its principal /
  permission (by position) from the output — unless it was the only one left, where istiod's form of
  "no constraint" remains: an ``andIds``/``andRules`` left empty becomes ``[{any: true}]``, as istiod
  writes it for ``rules: [{}]`` (golden ``allow-empty-rule``);
- an unknown refused field fails the helper (its table must say what istiod makes of it).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshjwt.localmesh.translate import authz

JWT_FILTER = "envoy.filters.http.jwt_authn"
#: a metadata matcher on another filter's metadata than jwt_authn's (what ``experimental.*`` keys become)
OTHER_METADATA = "metadata(not jwt_authn)"

#: refused input field → the Envoy matcher kind istiod builds for it (pilot/pkg/security/authz/model/generator.go)
SOURCE_MATCHERS = {
    **dict.fromkeys(["principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
                     "notServiceAccounts", "trustDomains", "notTrustDomains"], "authenticated"),
    "ipBlocks": "directRemoteIp", "notIpBlocks": "directRemoteIp",
    "remoteIpBlocks": "remoteIp", "notRemoteIpBlocks": "remoteIp",
}  # fmt: skip
OPERATION_MATCHERS = {"ports": "destinationPort", "notPorts": "destinationPort"}
#: refused ``when`` key (a key ending in "." is a prefix) → matcher kind
WHEN_MATCHERS: dict[str, str | None] = {
    "source.ip": "directRemoteIp", "remote.ip": "remoteIp", "source.namespace": "authenticated",
    "source.principal": "authenticated", "source.serviceAccount": "authenticated", "destination.ip": "destinationIp",
    "destination.port": "destinationPort", "connection.sni": "requestedServerName", "experimental.": OTHER_METADATA,
    "request.experimental.": None,  # in no golden input; say what istiod builds before using it
}  # fmt: skip
_COMBINERS = {"andIds": "ids", "orIds": "ids", "andRules": "rules", "orRules": "rules"}
_POLICY_KEY = re.compile(r"^ns\[(?P<ns>[^]]*)\]-policy\[(?P<name>[^]]*)\]-rule\[(?P<rule>\d+)\]$")


@dataclass
class Stripped:
    """What :func:`strip_input` removed: field paths, matcher kinds, and ``from``/``to`` entries dropped."""

    #: (policy name, field path as the translator's refusal names it), in the order the translator checks them
    fields: list[tuple[str, str]] = field(default_factory=list)
    #: policy name → the matcher kinds istiod made of its stripped fields
    kinds: dict[str, set[str]] = field(default_factory=dict)
    #: (policy name, rule index, "from"|"to") → positions of entries dropped, and whether none is left
    dropped: dict[tuple[str, int, str], tuple[list[int], bool]] = field(default_factory=dict)


def _when_kind(key: str) -> str | None | bool:
    """The matcher kind of a refused ``when`` key (None if unknown), or False for a supported key."""
    for refused, kind in WHEN_MATCHERS.items():
        if key == refused or (refused.endswith(".") and key.startswith(refused)):
            return kind
    return False


def strip_input(docs: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], Stripped]:
    """Copies of the AuthorizationPolicies without the fields the local mesh refuses, and what was removed."""
    assert set(SOURCE_MATCHERS) == set(authz.REFUSED_SOURCE), "SOURCE_MATCHERS must cover authz.REFUSED_SOURCE"
    assert set(OPERATION_MATCHERS) == set(authz.REFUSED_OPERATION)
    assert set(WHEN_MATCHERS) == set(authz.REFUSED_WHEN)
    out, stripped = [], Stripped()
    for doc in docs:
        doc = copy.deepcopy(dict(doc))
        name = doc["metadata"]["name"]
        for r, rule in enumerate((doc.get("spec") or {}).get("rules") or []):
            where = f"spec.rules[{r}]"
            for part, inner, table in (("from", "source", SOURCE_MATCHERS), ("to", "operation", OPERATION_MATCHERS)):
                if not rule.get(part):
                    continue
                kept, gone = [], []
                for e, entry in enumerate(rule[part]):
                    body = entry[inner]
                    for key in [k for k in body if k in table]:
                        stripped.fields.append((name, f"{where}.{part}[{e}].{inner}.{key}"))
                        stripped.kinds.setdefault(name, set()).add(table[key])
                        del body[key]
                    if body:
                        kept.append(entry)
                    else:
                        gone.append(e)
                if gone:
                    stripped.dropped[(name, r, part)] = (gone, not kept)
                if kept:
                    rule[part] = kept
                else:
                    del rule[part]
            conditions = []
            for c, cond in enumerate(rule.get("when") or []):
                kind = _when_kind(cond["key"])
                if kind is False:
                    conditions.append(cond)
                else:
                    assert kind, f"{where}.when[{c}]: which matcher istiod builds for {cond['key']} is not listed"
                    stripped.fields.append((name, f'{where}.when[{c}].key "{cond["key"]}"'))
                    stripped.kinds.setdefault(name, set()).add(kind)
            if "when" in rule:
                if conditions:
                    rule["when"] = conditions
                else:
                    del rule["when"]
        out.append(doc)
    return out, stripped


def _leaf_kinds(node: Any) -> set[str]:
    """The kinds of the leaf matchers under one principal/permission matcher."""
    (key, value), *rest = node.items()
    assert not rest, f"a matcher has one field: {node}"
    if key in _COMBINERS:
        return set().union(*(_leaf_kinds(n) for n in value[_COMBINERS[key]]))
    if key in ("notId", "notRule"):
        return _leaf_kinds(value)
    if key == "metadata" and value.get("filter") != JWT_FILTER:
        return {OTHER_METADATA}
    return {key}


def _without(items: list[dict[str, Any]], kinds: set[str], where: str) -> list[dict[str, Any]]:
    kept = []
    for item in items:
        leaves = _leaf_kinds(item)
        if leaves <= kinds:
            continue
        assert not leaves & kinds, f"{where}: a matcher mixes stripped and kept kinds: {sorted(leaves)}"
        kept.append(item)
    return kept


def _strip_entries(entries: list[dict[str, Any]], combiner: str, kinds: set[str], drop: tuple[list[int], bool] | None,
                   where: str) -> list[dict[str, Any]]:  # fmt: skip
    inner = _COMBINERS[combiner]
    gone, none_left = drop or ([], False)
    out = []
    for i, entry in enumerate(entries):
        if i in gone and not (none_left and i == gone[0]):
            continue
        if combiner not in entry:  # e.g. istiod's match-never entry {notId: {any: true}}
            assert not _leaf_kinds(entry) & kinds, f"{where}[{i}]: a stripped matcher outside {combiner}"
            out.append(entry)
            continue
        kept = _without(entry[combiner][inner], kinds, f"{where}[{i}]")
        out.append({combiner: {inner: kept or [{"any": True}]}})
    return out


def strip_output(rbac_filter: Mapping[str, Any], stripped: Stripped) -> dict[str, Any]:
    """A copy of one golden RBAC filter without the matchers istiod made of the stripped fields."""
    out = copy.deepcopy(dict(rbac_filter))
    config = out["typedConfig"]
    for rules_key in ("rules", "shadowRules"):
        for key, policy in ((config.get(rules_key) or {}).get("policies") or {}).items():
            m = _POLICY_KEY.match(key)
            assert m, f"unexpected policy name {key}"
            name, rule = m["name"], int(m["rule"])
            kinds = stripped.kinds.get(name, set())
            for part, combiner, side in (("from", "andIds", "principals"), ("to", "andRules", "permissions")):
                drop = stripped.dropped.get((name, rule, part))
                policy[side] = _strip_entries(policy[side], combiner, kinds, drop, f"{key}.{side}")
    return out


def count_jwt_matchers(node: Any) -> int:
    """How many matchers on the jwt_authn payload (request principals, claims, audiences …) a filter holds."""
    if isinstance(node, list):
        return sum(count_jwt_matchers(n) for n in node)
    if not isinstance(node, dict):
        return 0
    own = 1 if node.get("filter") == JWT_FILTER and "path" in node else 0
    return own + sum(count_jwt_matchers(v) for v in node.values())
