"""AuthorizationPolicy → Envoy HTTP RBAC filters, as istiod builds them.

Follows istio/istio ``pilot/pkg/security/authz/builder/builder.go`` (filter order, policy names,
dry-run) and ``.../authz/model/{model,generator,util}.go`` with ``.../authz/matcher/`` (rule
structure, matchers) for the HTTP features a JWT conformance suite needs. What needs a real mesh
(mTLS peer identity, pod addresses, workload ports, ext_authz providers) raises
:class:`~meshjwt.errors.UnsupportedField`; input istiod's validation webhook rejects raises
:class:`~meshjwt.errors.ConfigError`. Nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from meshjwt.errors import ConfigError, UnsupportedField

Json = dict[str, Any]

RBAC_FILTER = "envoy.filters.http.rbac"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
JWT_FILTER = "envoy.filters.http.jwt_authn"
URI_TEMPLATE_TYPE = "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
DRY_RUN_ANNOTATION = "istio.io/dry-run"

#: Istio action → Envoy RBAC action, in the order istiod emits the filters (CUSTOM is refused).
RBAC_ACTIONS = {"AUDIT": "LOG", "DENY": "DENY", "ALLOW": "ALLOW"}
_SHADOW_STAT_PREFIX = {"ALLOW": "istio_dry_run_allow_", "DENY": "istio_dry_run_deny_", "LOG": ""}
_PARSE_BOOL = {v: True for v in ("1", "t", "T", "true", "TRUE", "True")} | {
    v: False for v in ("0", "f", "F", "false", "FALSE", "False")
}

_MTLS = "it matches the mTLS peer identity (SPIFFE certificate), which the local mesh does not have"
_ADDR = "it matches real pod/client addresses; on the local mesh every peer is 127.0.0.1"
_PORT = "local listener ports differ from the workload ports, so port matches would be wrong"
_EXT_AUTHZ = "CUSTOM needs an ext_authz provider (meshConfig.extensionProviders), which the local mesh lacks"
#: source fields that need a real mesh, with the reason
REFUSED_SOURCE = {
    "principals": _MTLS, "notPrincipals": _MTLS, "namespaces": _MTLS, "notNamespaces": _MTLS,
    "serviceAccounts": _MTLS, "notServiceAccounts": _MTLS, "trustDomains": _MTLS, "notTrustDomains": _MTLS,
    "ipBlocks": _ADDR, "notIpBlocks": _ADDR,
    "remoteIpBlocks": _ADDR, "notRemoteIpBlocks": _ADDR,
}  # fmt: skip
REFUSED_OPERATION = {"ports": _PORT, "notPorts": _PORT}
#: `when` keys that need a real mesh, with the reason (prefix keys end with ".")
REFUSED_WHEN = {
    "source.ip": _ADDR, "remote.ip": _ADDR, "destination.ip": _ADDR, "destination.port": _PORT,
    "source.namespace": _MTLS, "source.principal": _MTLS, "source.serviceAccount": _MTLS,
    "connection.sni": "it matches the SNI of the mTLS connection, which the local mesh does not have",
    "experimental.": "experimental attributes (raw Envoy metadata) are not implemented by the local mesh",
    "request.experimental.": "experimental attributes (inline headers) are not implemented by the local mesh",
}  # fmt: skip
_SOURCE_FIELDS = {"requestPrincipals", "notRequestPrincipals", *REFUSED_SOURCE}
_OPERATION_FIELDS = {"hosts", "notHosts", "methods", "notMethods", "paths", "notPaths", *REFUSED_OPERATION}
_TOP_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}
_SPEC_FIELDS = {"selector", "targetRef", "targetRefs", "action", "rules", "provider"}
_JWT_CLAIM_KEYS = {"request.auth.audiences": "aud", "request.auth.presenter": "azp"}
_VALID_LITERAL = re.compile(r"^[a-zA-Z0-9-._~%!$&'()+,;:@=]+$")  # RFC 3986 pchar, as istio's validation


class _Policy:
    """One AuthorizationPolicy, checked: supported fields only, valid as istiod's webhook requires."""

    def __init__(self, resource: Mapping[str, Any]) -> None:
        meta = resource.get("metadata") or {}
        self.namespace: str = meta.get("namespace", "default")
        self.name: str = meta.get("name", "")
        self.where = f"{resource.get('kind')} {self.namespace}/{self.name}"
        if resource.get("kind") != "AuthorizationPolicy" or not self.name:
            self._invalid("", "expected an AuthorizationPolicy with metadata.name")
        self._fields(resource, _TOP_FIELDS, "")
        spec = resource.get("spec") or {}
        self._fields(spec, _SPEC_FIELDS, "spec.")
        self.action: str = spec.get("action") or "ALLOW"
        if self.action == "CUSTOM":
            self._refuse("spec.action", _EXT_AUTHZ)
        if self.action not in RBAC_ACTIONS:
            self._refuse("spec.action", f"unknown action {self.action!r}")
        if spec.get("provider"):
            self._refuse("spec.provider", _EXT_AUTHZ)
        dry_run = (meta.get("annotations") or {}).get(DRY_RUN_ANNOTATION)
        if dry_run is not None and str(dry_run) not in _PARSE_BOOL:
            self._invalid(f"metadata.annotations[{DRY_RUN_ANNOTATION}]", "expected a boolean")
        self.dry_run = dry_run is not None and _PARSE_BOOL[str(dry_run)]
        self.rules: list[Mapping[str, Any]] = spec.get("rules") or []
        if not isinstance(self.rules, list):
            self._invalid("spec.rules", "expected a list")
        if self.action == "DENY" and not self.rules:
            self._invalid("spec.rules", "a DENY policy without rules never triggers; istiod rejects it")
        for i, rule in enumerate(self.rules):
            self._rule(rule, f"spec.rules[{i}]")

    def _refuse(self, path: str, why: str) -> NoReturn:
        raise UnsupportedField(f"{self.where}: {path} is not supported by the local mesh: {why}")

    def _invalid(self, path: str, why: str) -> NoReturn:
        raise ConfigError(f"{self.where}: {path}: {why}" if path else f"{self.where}: {why}")

    def _fields(self, obj: Any, known: set[str], path: str) -> None:
        if not isinstance(obj, Mapping):
            self._invalid(path.rstrip("."), "expected a mapping")
        for key in obj:
            if key not in known:
                self._refuse(f"{path}{key}", "unknown field (not in the AuthorizationPolicy API)")

    def _strings(self, obj: Mapping[str, Any], key: str, path: str) -> list[str]:
        values = obj.get(key) or []
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            self._invalid(f"{path}.{key}", "expected a list of non-empty strings")
        return values

    def _rule(self, rule: Any, path: str) -> None:
        if rule is None:
            self._invalid(path, "a rule must not be null")
        self._fields(rule, {"from", "to", "when"}, f"{path}.")
        for part, inner, known, refused in (
            ("from", "source", _SOURCE_FIELDS, REFUSED_SOURCE),
            ("to", "operation", _OPERATION_FIELDS, REFUSED_OPERATION),
        ):
            entries = rule.get(part)
            if entries is not None and (not isinstance(entries, list) or not entries):
                self._invalid(f"{path}.{part}", "must be a non-empty list when set")
            for j, entry in enumerate(entries or []):
                at = f"{path}.{part}[{j}]"
                self._fields(entry or {}, {inner}, f"{at}.")
                body = (entry or {}).get(inner)
                if body is None:
                    self._invalid(f"{at}.{inner}", "must be set")
                self._fields(body, known, f"{at}.{inner}.")
                for key in body:
                    if key in refused and body[key]:
                        self._refuse(f"{at}.{inner}.{key}", refused[key])
                if not any([self._strings(body, key, f"{at}.{inner}") for key in body]):
                    self._invalid(f"{at}.{inner}", "must not be empty")
                for key in ("paths", "notPaths"):
                    self._path_templates(body.get(key) or [], f"{at}.{inner}.{key}")
        when = rule.get("when") or []
        if not isinstance(when, list):
            self._invalid(f"{path}.when", "expected a list")
        for j, cond in enumerate(when):
            self._condition(cond, f"{path}.when[{j}]")

    def _condition(self, cond: Any, path: str) -> None:
        self._fields(cond, {"key", "values", "notValues"}, f"{path}.")
        key = cond.get("key") or ""
        at = f'{path}.key "{key}"'
        for refused, why in REFUSED_WHEN.items():
            if key == refused or (refused.endswith(".") and key.startswith(refused)):
                self._refuse(at, why)
        if key in ("request.auth.principal", *_JWT_CLAIM_KEYS):
            pass
        elif key.startswith(("request.headers", "request.auth.claims")):
            prefix = "request.headers" if key.startswith("request.headers") else "request.auth.claims"
            rest = key[len(prefix) :]
            if not (rest.startswith("[") and rest.endswith("]") and len(rest) > 2):
                self._invalid(at, f"expected the form {prefix}[name]")
        else:
            self._refuse(at, "unknown attribute")
        if not (self._strings(cond, "values", path) or self._strings(cond, "notValues", path)):
            self._invalid(path, f"at least one of values or notValues must be set for key {key}")

    def _path_templates(self, paths: list[str], path: str) -> None:
        """istio ``security.CheckValidPathTemplate``: ``{*}``/``{**}`` as whole segments, ``{**}`` last."""
        for value in paths:
            templated = "{*}" in value or "{**}" in value
            seen_any = False
            for glob in value.strip("/").split("/"):
                if glob in ("{*}", "{**}"):
                    if seen_any:
                        self._invalid(path, f"invalid path template {value!r}: {{**}} must come last")
                    seen_any = glob == "{**}"
                    continue
                if "{" in glob or "}" in glob or (templated and not _VALID_LITERAL.match(glob)):
                    self._invalid(path, f"invalid path template {value!r}")


# --- matchers (istio authz/matcher) ---------------------------------------------------------------


def _string(value: str, ignore_case: bool = False) -> Json:
    """``matcher.StringMatcher``: ``*`` any (regex ``.+``), ``*x`` suffix, ``x*`` prefix, else exact."""
    if value == "*":
        return {"safeRegex": {"regex": ".+"}}
    if value.startswith("*"):
        m: Json = {"suffix": value[1:]}
    elif value.endswith("*"):
        m = {"prefix": value[:-1]}
    else:
        m = {"exact": value}
    if ignore_case:
        m["ignoreCase"] = True
    return m


def _header(name: str, value: str, ignore_case: bool = False) -> Json:
    """``matcher.HeaderMatcher`` / ``HostMatcher`` (the latter ignores case); ``*`` means present."""
    if value == "*":
        return {"header": {"name": name, "presentMatch": True}}
    return {"header": {"name": name, "stringMatch": _string(value, ignore_case)}}


def _path(value: str) -> Json:
    """``pathGenerator``: a URI template if the value holds ``{*}``/``{**}``, else a path matcher."""
    if "{*}" in value or "{**}" in value:
        template = value.replace("{*}", "*").replace("{**}", "**")
        config = {"@type": URI_TEMPLATE_TYPE, "pathTemplate": template}
        return {"uriTemplate": {"name": "uri-template", "typedConfig": config}}
    return {"urlPath": {"path": _string(value)}}


def _jwt_claim(claim: str, string_match: Json) -> Json:
    """A principal on one string claim of the jwt_authn payload metadata."""
    path = [{"key": "payload"}, {"key": claim}]
    return {"metadata": {"filter": JWT_FILTER, "path": path, "value": {"stringMatch": string_match}}}


def _jwt_claims(claims: Sequence[str], values: Sequence[str]) -> Json:
    """``MetadataListValueMatcherForJWTClaims``: the claim equals a value or is a list containing one."""

    def any_value() -> Json:
        matchers = [{"stringMatch": _string(v)} for v in values]
        return matchers[0] if len(matchers) == 1 else {"orMatch": {"valueMatchers": matchers}}

    value = {"orMatch": {"valueMatchers": [{"listMatch": {"oneOf": any_value()}}, any_value()]}}
    path = [{"key": k} for k in ("payload", *claims)]
    return {"metadata": {"filter": JWT_FILTER, "path": path, "value": value}}


def _request_principals(values: Sequence[str]) -> Json:
    """``requestPrincipalGenerator.extendedPrincipal``: ``iss/sub`` split at the last ``/``."""
    ids = []
    for value in values:
        idx = value.rfind("/")
        found = idx >= 0
        iss, sub = (value[:idx], value[idx + 1 :]) if found else (value, "")
        if value == "*":
            m_iss, m_sub = _string("*"), _string("*")
        elif value.startswith("*"):
            if found:
                m_iss, m_sub = (_string("*") if iss == "*" else {"suffix": iss[1:]}), {"exact": sub}
            else:
                m_iss, m_sub = _string("*"), {"suffix": value[1:]}
        elif value.endswith("*"):
            if found:
                m_iss, m_sub = {"exact": iss}, (_string("*") if sub == "*" else {"prefix": sub[:-1]})
            else:
                m_iss, m_sub = {"prefix": value[:-1]}, _string("*")
        else:
            m_iss, m_sub = {"exact": iss}, {"exact": sub}
        ids.append({"andIds": {"ids": [_jwt_claim("iss", m_iss), _jwt_claim("sub", m_sub)]}})
    return ids[0] if len(ids) == 1 else {"orIds": {"ids": ids}}


def _claim_path(rest: str) -> list[str]:
    """``extractNameInNestedBrackets``: ``[a][b]`` → ``[a, b]``, else the text in the outer brackets."""
    claims, begin = [], 0
    while begin < len(rest):
        end = rest.find("]", begin)
        if rest[begin] != "[" or end < 0 or "[" in rest[begin + 1 : end]:
            return [rest[1:-1]]
        claims.append(rest[begin + 1 : end])
        begin = end + 1
    return claims


# --- rules (istio authz/model) --------------------------------------------------------------------


def _not(field: str) -> str:
    return "not" + field[0].upper() + field[1:]


def _each(obj: Mapping[str, Any], field: str, one: Callable[[str], Json], kind: str) -> list[Json]:
    """A per-value rule on ``field``/``notField``: OR of values, NOT(OR of notValues); kind rules|ids."""
    or_key, not_key = ("orRules", "notRule") if kind == "rules" else ("orIds", "notId")
    values, not_values = obj.get(field) or [], obj.get(_not(field)) or []
    out = [{or_key: {kind: [one(v) for v in values]}}] if values else []
    if not_values:
        out.append({not_key: {or_key: {kind: [one(v) for v in not_values]}}})
    return out


def _aggregated(obj: Mapping[str, Any], field: str, all_of: Callable[[Sequence[str]], Json]) -> list[Json]:
    """An extended principal rule: one matcher for all values, then NOT(one matcher for all notValues)."""
    values, not_values = obj.get(field) or [], obj.get(_not(field)) or []
    out = [all_of(values)] if values else []
    if not_values:
        out.append({"notId": all_of(not_values)})
    return out


def _condition_ids(cond: Mapping[str, Any]) -> list[Json]:
    """The principal matchers of one supported ``when`` condition (all of them are principal-side)."""
    key = cond["key"]
    if key.startswith("request.headers"):
        name = key[len("request.headers") + 1 : -1]
        return _each(cond, "values", lambda v: _header(name, v), "ids")
    if key == "request.auth.principal":
        return _aggregated(cond, "values", _request_principals)
    claims = [_JWT_CLAIM_KEYS[key]] if key in _JWT_CLAIM_KEYS else _claim_path(key[len("request.auth.claims"):])
    return _aggregated(cond, "values", lambda values: _jwt_claims(claims, values))


def _host(value: str) -> Json:
    return _header(":authority", value, ignore_case=True)


def _method(value: str) -> Json:
    return _header(":method", value)


def _rule_policy(rule: Mapping[str, Any]) -> Json:
    """``model.New(rule).Generate``: from entries OR-ed, to entries OR-ed, when AND-ed into each from."""
    principals = []
    for entry in rule.get("from") or [None]:
        ids = _aggregated((entry or {}).get("source") or {}, "requestPrincipals", _request_principals)
        for cond in rule.get("when") or []:
            ids += _condition_ids(cond)
        principals.append({"andIds": {"ids": ids or [{"any": True}]}})
    permissions = []
    for entry in rule.get("to") or [None]:
        op = (entry or {}).get("operation") or {}
        rules = _each(op, "hosts", _host, "rules") + _each(op, "methods", _method, "rules")
        rules += _each(op, "paths", _path, "rules")
        permissions.append({"andRules": {"rules": rules or [{"any": True}]}})
    return {"permissions": permissions, "principals": principals}


def _match_never() -> Json:
    """``rbacPolicyMatchNever``: istiod's entry for a policy without rules."""
    return {"permissions": [{"notRule": {"any": True}}], "principals": [{"notId": {"any": True}}]}


def _rbac(action: str, policies: Json) -> Json:
    out: Json = {} if action == "ALLOW" else {"action": action}
    if policies:
        out["policies"] = policies
    return out


def _filter(policies: Sequence[_Policy], action: str) -> Json:
    """``Builder.build`` + ``buildHTTP`` for the policies of one action."""
    enforced: Json | None = None
    shadow: Json | None = None
    for p in policies:
        if p.dry_run:
            shadow = target = shadow if shadow is not None else {}
        else:
            enforced = target = enforced if enforced is not None else {}
        for i, rule in enumerate(p.rules):
            target[f"ns[{p.namespace}]-policy[{p.name}]-rule[{i}]"] = _rule_policy(rule)
        if not p.rules:
            target[f"ns[{p.namespace}]-policy[{p.name}]-rule[0]"] = _match_never()
    config: Json = {"@type": RBAC_TYPE}
    if enforced is not None:
        config["rules"] = _rbac(action, enforced)
    if shadow is not None:
        config["shadowRules"] = _rbac(action, shadow)
    # istiod takes the prefix from the shadow rules' action; without shadow rules that is ALLOW's
    prefix = _SHADOW_STAT_PREFIX[action if shadow is not None else "ALLOW"]
    if prefix:
        config["shadowRulesStatPrefix"] = prefix
    return {"name": RBAC_FILTER, "typedConfig": config}


def build_rbac_filters(policies: Sequence[Mapping[str, Any]], *, extended: bool = True) -> list[Json]:
    """Envoy HTTP filters for the AuthorizationPolicies that apply to one workload, as istiod emits them.

    Proto-JSON dicts (``{"name": "envoy.filters.http.rbac", "typedConfig": {...}}``), one filter per
    action present, in istiod's order AUDIT (RBAC ``LOG``), DENY, ALLOW; they go after the
    ``jwt_authn`` filter and before the router. Policies keep their given order (istiod sorts by
    creation time); ``selector``/``targetRef`` are ignored (the caller selected the policies).
    CUSTOM (ext_authz, placed before ``jwt_authn`` by istiod) is refused.

    ``extended`` names the form istiod emits for proxies with the upstream ``jwt_authn`` metadata
    (the golden ``extended-*`` files). Since the ``istio_authn`` filter was removed (Istio 1.24)
    istiod has no other form, and the plain goldens equal the extended ones, so both values give
    the same output.

    Raises :class:`UnsupportedField` for fields needing a real mesh or unknown fields and
    :class:`ConfigError` for input istiod's validation rejects (both one-line, naming the field).
    """
    del extended  # one form only, see above
    checked = [_Policy(p) for p in policies]
    filters = []
    for action, rbac_action in RBAC_ACTIONS.items():
        group = [p for p in checked if p.action == action]
        if group:
            filters.append(_filter(group, rbac_action))
    return filters


_NORMALIZATION = {
    "NONE": (False, False, "KEEP_UNCHANGED"),
    "BASE": (True, False, "KEEP_UNCHANGED"),
    "DEFAULT": (True, False, "KEEP_UNCHANGED"),
    "MERGE_SLASHES": (True, True, "KEEP_UNCHANGED"),
    "DECODE_AND_MERGE_SLASHES": (True, True, "UNESCAPE_AND_FORWARD"),
}


def path_normalization(mode: str = "BASE") -> Json:
    """HttpConnectionManager fields for meshConfig ``pathNormalization.normalization``, as istiod sets them.

    NONE: no normalization; BASE (= DEFAULT): RFC 3986 (``/a/../b`` → ``/b``); MERGE_SLASHES: also
    ``//`` → ``/``; DECODE_AND_MERGE_SLASHES: also unescape ``%2F``/``%5C`` and forward.
    """
    if mode not in _NORMALIZATION:
        expected = ", ".join(_NORMALIZATION)
        raise ConfigError(
            f"meshConfig.pathNormalization.normalization: unknown mode {mode!r}, expected {expected}"
        )
    normalize, merge, escaped = _NORMALIZATION[mode]
    return {"normalizePath": normalize, "mergeSlashes": merge, "pathWithEscapedSlashesAction": escaped}
