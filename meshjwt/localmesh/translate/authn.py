"""RequestAuthentication → Envoy ``jwt_authn`` filter, as istiod's ``convertToEnvoyJwtConfig`` builds it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshjwt.errors import UnsupportedField
from meshjwt.localmesh.translate.selection import resource_id

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
SUPPORTED_RULE_FIELDS = {
    "issuer", "audiences", "jwks", "jwksUri", "fromHeaders", "fromParams", "fromCookies",
    "forwardOriginalToken", "outputPayloadToHeader", "outputClaimToHeaders", "timeout", "spaceDelimitedClaims",
}  # fmt: skip
SUPPORTED_SPEC_FIELDS = {"selector", "jwtRules"}

#: given one jwtRule, returns the provider's JWKS source: {"localJwks": ...} or {"remoteJwks": ...}
JwksSource = Callable[[Mapping[str, Any]], dict[str, Any]]


def jwt_rules(request_authentications: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """All jwtRules of the given RAs, checked for unsupported fields, sorted by issuer (stable)."""
    rules: list[dict[str, Any]] = []
    for ra in request_authentications:
        spec = ra.get("spec") or {}
        for key in spec:
            if key not in SUPPORTED_SPEC_FIELDS and key not in ("targetRef", "targetRefs"):
                raise UnsupportedField(f"{resource_id(ra)}: spec.{key} is not supported by the local mesh")
        for i, rule in enumerate(spec.get("jwtRules") or []):
            for key in rule:
                if key not in SUPPORTED_RULE_FIELDS:
                    raise UnsupportedField(
                        f"{resource_id(ra)}: spec.jwtRules[{i}].{key} is not supported by the local mesh"
                    )
            rules.append(dict(rule))
    return sorted(rules, key=lambda r: r.get("issuer", ""))


def space_delimited_claims(custom: Sequence[str] | None) -> list[str]:
    """Claims normalized as space-delimited lists: ``scope`` and ``permission`` plus any custom ones."""
    if custom is None:
        return ["permission", "scope"]
    return sorted(set(custom) | {"permission", "scope"})


def provider(rule: Mapping[str, Any], jwks_source: JwksSource, clear_route_cache: bool = False) -> dict[str, Any]:
    """One jwt_authn provider for one jwtRule (``clear_route_cache`` as istiod sets it for gateways)."""
    out: dict[str, Any] = {"issuer": rule.get("issuer", "")}
    if rule.get("audiences"):
        out["audiences"] = list(rule["audiences"])
    out.update(jwks_source(rule))
    if rule.get("forwardOriginalToken"):
        out["forward"] = True
    if rule.get("fromHeaders"):
        out["fromHeaders"] = [
            {"name": h["name"], **({"valuePrefix": h["prefix"]} if h.get("prefix") else {})}
            for h in rule["fromHeaders"]
        ]
    if rule.get("fromParams"):
        out["fromParams"] = list(rule["fromParams"])
    if rule.get("fromCookies"):
        out["fromCookies"] = list(rule["fromCookies"])
    if rule.get("outputPayloadToHeader"):
        out["forwardPayloadHeader"] = rule["outputPayloadToHeader"]
    out["payloadInMetadata"] = "payload"
    out["normalizePayloadInMetadata"] = {
        "spaceDelimitedClaims": space_delimited_claims(rule.get("spaceDelimitedClaims"))
    }
    if rule.get("outputClaimToHeaders"):
        out["claimToHeaders"] = [
            {"headerName": c["header"], "claimName": c["claim"]} for c in rule["outputClaimToHeaders"]
        ]
    if clear_route_cache:
        out["clearRouteCache"] = True
    return out


def jwt_authn_config(
    rules: Sequence[Mapping[str, Any]], jwks_source: JwksSource, *, clear_route_cache: bool = False
) -> dict[str, Any] | None:
    """istiod's ``convertToEnvoyJwtConfig``: the JwtAuthentication config for jwtRules in the given order.

    One provider: ``requires_any [origins-0, allow_missing]``. N providers: ``requires_any [origins-0..N-1,
    requires_all [any(origins-i, allow_missing)...]]`` — a token, if present, must be valid; none passes.
    ``clear_route_cache`` is true for gateways (istiod: JWT claim based routing), false for sidecars.
    """
    if not rules:
        return None
    providers: dict[str, Any] = {}
    inner_and: list[dict[str, Any]] = []
    outer_or: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        name = f"origins-{i}"
        providers[name] = provider(rule, jwks_source, clear_route_cache)
        inner_and.append({"requiresAny": {"requirements": [{"providerName": name}, {"allowMissing": {}}]}})
        outer_or.append({"providerName": name})
    if len(inner_and) == 1:
        requires = inner_and[0]
    else:
        requires = {"requiresAny": {"requirements": [*outer_or, {"requiresAll": {"requirements": inner_and}}]}}
    return {
        "@type": JWT_TYPE,
        "providers": providers,
        "rules": [{"match": {"prefix": "/"}, "requires": requires}],
        "bypassCorsPreflight": True,
    }


def build_jwt_filter(
    request_authentications: Sequence[Mapping[str, Any]], jwks_source: JwksSource, *, clear_route_cache: bool = False
) -> dict[str, Any] | None:
    """The jwt_authn HTTP filter for the RAs selecting one workload (istiod's ``JwtFilter``), or None without rules.

    The rules of all RAs are concatenated and sorted by issuer (:func:`jwt_rules`), then converted by
    :func:`jwt_authn_config`; pass ``clear_route_cache=True`` for a gateway.
    """
    config = jwt_authn_config(jwt_rules(request_authentications), jwks_source, clear_route_cache=clear_route_cache)
    return None if config is None else {"name": JWT_FILTER, "typedConfig": config}


def parse_duration(value: str | None, default: float = 5.0) -> float:
    """Istio duration string (``5s``, ``500ms``, ``1m``) → seconds."""
    if not value:
        return default
    text = str(value).strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    raise UnsupportedField(f"jwtRules timeout {value!r} is not a duration like '5s' or '500ms'")
