"""Mutants of AuthorizationPolicy (istiod's ``pilot/pkg/security/authz`` → Envoy HTTP RBAC filters).

Most are istiod misreading the applied policy (a field or condition dropped, an action or annotation misread);
where the bug would sit in the Envoy matcher istiod generates, the mutant edits the RBAC filter instead.
Killed by ``suites/scenarios/10-authz-fields.yaml`` (and, for some, the FAQ scenarios too).

A dropped field leaves what istiod would then generate: a source/operation left empty matches anything (its
``from``/``to`` entry goes), a condition left without values goes, a rule left empty matches every request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshjwt.localmesh.mutation import Json
from mutants.base import RBAC, EditFilter, EditResources, Mutant, each_matcher, walk

ISTIO = "istio/istio pilot/pkg/security/authz/"
MODEL = ISTIO + "model/model.go"
GENERATOR = ISTIO + "model/generator.go"
BUILDER = ISTIO + "builder/builder.go"
POLICY = "AuthorizationPolicy"


def _prune(rule: Json) -> None:
    """What istiod generates once fields are gone: empty sources/operations and bare conditions drop out."""
    for part, inner in (("from", "source"), ("to", "operation")):
        if part in rule:
            rule[part] = [e for e in rule[part] if any((e or {}).get(inner, {}).values())]
            if not rule[part]:
                del rule[part]
    if "when" in rule:
        rule["when"] = [c for c in rule["when"] if c.get("values") or c.get("notValues")]
        if not rule["when"]:
            del rule["when"]


def _rules(edit: Callable[[Json], None]) -> Callable[[Json], None]:
    """An edit of an AuthorizationPolicy that applies ``edit`` to each rule, then prunes what became empty."""

    def run(resource: Json) -> None:
        for rule in (resource.get("spec") or {}).get("rules") or []:
            if isinstance(rule, dict):
                edit(rule)
                _prune(rule)

    return run


def _drop_field(field: str, part: str, inner: str) -> Callable[[Json], None]:
    def edit(rule: Json) -> None:
        for entry in rule.get(part) or []:
            ((entry or {}).get(inner) or {}).pop(field, None)

    return _rules(edit)


def ignore_source(name: str, field: str, *, breaks: str, source: str) -> EditResources:
    """istiod ignores ``from.source.<field>``."""
    return EditResources(name, breaks, source, kind=POLICY, edit=_drop_field(field, "from", "source"))


def ignore_operation(name: str, field: str, *, breaks: str, source: str) -> EditResources:
    """istiod ignores ``to.operation.<field>``."""
    return EditResources(name, breaks, source, kind=POLICY, edit=_drop_field(field, "to", "operation"))


def ignore_condition(name: str, test: Callable[[str], bool], *, breaks: str, source: str) -> EditResources:
    """istiod skips the ``when`` conditions whose key passes ``test``."""

    def edit(rule: Json) -> None:
        rule["when"] = [c for c in rule.get("when") or [] if not test(str(c.get("key", "")))]

    return EditResources(name, breaks, source, kind=POLICY, edit=_rules(edit))


def _set_principals_any(resource: Json) -> None:
    for node in walk(resource.get("spec") or {}):
        if node.get("requestPrincipals"):
            node["requestPrincipals"] = ["*"]


def _drop_not_values(rule: Json) -> None:
    for cond in rule.get("when") or []:
        cond.pop("notValues", None)


def _set_action(old: str, new: str) -> Callable[[Json], None]:
    def edit(resource: Json) -> None:
        spec = resource.get("spec") or {}
        if (spec.get("action") or "ALLOW") == old:
            spec["action"] = new

    return edit


def _drop_dry_run(resource: Json) -> None:
    (resource.get("metadata") or {}).get("annotations", {}).pop("istio.io/dry-run", None)


def _drop_selector(resource: Json) -> None:
    (resource.get("spec") or {}).pop("selector", None)


@dataclass
class SkipPolicies(Mutant):
    """istiod leaves out the AuthorizationPolicies of one action (as if they were not applied)."""

    action: str = "DENY"

    def resources(self, resources: list[Json]) -> list[Json]:
        return [
            r
            for r in resources
            if r.get("kind") != POLICY or ((r.get("spec") or {}).get("action") or "ALLOW") != self.action
        ]


# --- Envoy RBAC matchers istiod generates ---------------------------------------------------------


def _jwt_claim(node: Json, claim: str) -> bool:
    path = (node.get("metadata") or {}).get("path") or []
    return [p.get("key") for p in path] == ["payload", claim]


def _is_iss_sub(node: Json) -> bool:
    ids = (node.get("andIds") or {}).get("ids") or []
    return len(ids) == 2 and _jwt_claim(ids[0], "iss") and _jwt_claim(ids[1], "sub")


def _issuer_only(node: Json) -> None:
    node["andIds"]["ids"] = node["andIds"]["ids"][:1]


def _is_host(node: Json) -> bool:
    return node.get("name") == ":authority" and "stringMatch" in node


def _case_sensitive(node: Json) -> None:
    node["stringMatch"].pop("ignoreCase", None)


def _is_url_path(node: Json) -> bool:
    return set((node.get("urlPath") or {}).get("path") or {}) & {"prefix", "suffix"} != set()


def _wildcard_as_exact(node: Json) -> None:
    path = node["urlPath"]["path"]
    if "prefix" in path:
        path["exact"] = path.pop("prefix") + "*"
    else:
        path["exact"] = "*" + path.pop("suffix")


def _is_claim_or_list(node: Json) -> bool:
    """The or(list_match.one_of, string_match) istiod emits for request.auth.claims/audiences/presenter."""
    matchers = (node.get("orMatch") or {}).get("valueMatchers") or []
    return len(matchers) == 2 and "listMatch" in matchers[0]


def _any_list(node: Json) -> None:
    node["orMatch"]["valueMatchers"][0] = {"listMatch": {"oneOf": {"presentMatch": True}}}


def _strings_only(node: Json) -> None:
    node.update(node.pop("orMatch")["valueMatchers"][1])  # Envoy's or_match needs two matchers: keep the string one


MUTANTS: list[Mutant] = [
    # --- from.source ---
    EditResources(
        "request-principals-any",
        "rules.from.source requestPrincipals: any principal is accepted (read as '*')",
        f"{GENERATOR} requestPrincipalGenerator.extendedPrincipal",
        kind=POLICY,
        edit=_set_principals_any,
    ),
    EditFilter(
        "request-principals-issuer-only",
        "rules.from.source requestPrincipals (and when request.auth.principal): only the issuer part is compared",
        f"{GENERATOR} requestPrincipalGenerator.extendedPrincipal",
        filter=RBAC,
        edit=each_matcher(_is_iss_sub, _issuer_only),
    ),
    ignore_source(
        "not-request-principals-ignored",
        "notRequestPrincipals",
        breaks="rules.from.source notRequestPrincipals: ignored (the rule matches every principal)",
        source=f"{MODEL} New (insertFront of notValues), rule.principal",
    ),
    # --- to.operation ---
    ignore_operation(
        "hosts-ignored",
        "hosts",
        breaks="rules.to.operation hosts: ignored (any :authority matches)",
        source=f"{GENERATOR} hostGenerator.permission",
    ),
    ignore_operation(
        "not-hosts-ignored",
        "notHosts",
        breaks="rules.to.operation notHosts: ignored",
        source=f"{MODEL} New, rule.permission (notValues → permissionNot)",
    ),
    EditFilter(
        "hosts-case-sensitive",
        "rules.to.operation hosts and notHosts: :authority compared case-sensitively",
        f"{ISTIO}matcher/header.go HostMatcher (IgnoreCase = true)",
        filter=RBAC,
        edit=each_matcher(_is_host, _case_sensitive),
    ),
    ignore_operation(
        "methods-ignored",
        "methods",
        breaks="rules.to.operation methods: ignored (any method matches)",
        source=f"{GENERATOR} methodGenerator.permission",
    ),
    ignore_operation(
        "not-methods-ignored",
        "notMethods",
        breaks="rules.to.operation notMethods: ignored",
        source=f"{MODEL} New, rule.permission (notValues → permissionNot)",
    ),
    ignore_operation(
        "paths-ignored",
        "paths",
        breaks="rules.to.operation paths: ignored (any path matches)",
        source=f"{GENERATOR} pathGenerator.permission",
    ),
    ignore_operation(
        "not-paths-ignored",
        "notPaths",
        breaks="rules.to.operation notPaths: ignored",
        source=f"{MODEL} New, rule.permission (notValues → permissionNot)",
    ),
    EditFilter(
        "path-wildcards-exact",
        "rules.to.operation paths: '/x/*' and '*/x' compared as exact strings, not prefix/suffix",
        f"{ISTIO}matcher/string.go StringMatcher (via matcher/header.go PathMatcher)",
        filter=RBAC,
        edit=each_matcher(_is_url_path, _wildcard_as_exact),
    ),
    # --- when ---
    ignore_condition(
        "when-headers-ignored",
        lambda key: key.startswith("request.headers"),
        breaks="rules.when request.headers[...]: conditions dropped",
        source=f"{GENERATOR} requestHeaderGenerator.principal; {MODEL} New",
    ),
    ignore_condition(
        "when-claims-ignored",
        lambda key: key.startswith("request.auth.claims"),
        breaks="rules.when request.auth.claims[...]: conditions dropped",
        source=f"{GENERATOR} requestClaimGenerator.extendedPrincipal; {MODEL} New",
    ),
    EditFilter(
        "claims-any-list",
        "rules.when request.auth.claims[...]: a claim that is a list matches whatever its elements",
        f"{ISTIO}model/util.go MetadataListValueMatcherForJWTClaims (list_match.one_of)",
        filter=RBAC,
        edit=each_matcher(_is_claim_or_list, _any_list),
    ),
    EditFilter(
        "claims-strings-only",
        "rules.when request.auth.claims[...]: only plain string claims match, never a list",
        f"{ISTIO}model/util.go MetadataListValueMatcherForJWTClaims (list_match.one_of)",
        filter=RBAC,
        edit=each_matcher(_is_claim_or_list, _strings_only),
    ),
    ignore_condition(
        "when-principal-ignored",
        lambda key: key == "request.auth.principal",
        breaks="rules.when request.auth.principal: conditions dropped",
        source=f"{GENERATOR} requestPrincipalGenerator.extendedPrincipal; {MODEL} New",
    ),
    ignore_condition(
        "when-audiences-ignored",
        lambda key: key == "request.auth.audiences",
        breaks="rules.when request.auth.audiences: conditions dropped",
        source=f"{GENERATOR} requestAudiencesGenerator.extendedPrincipal; {MODEL} New",
    ),
    ignore_condition(
        "when-presenter-ignored",
        lambda key: key == "request.auth.presenter",
        breaks="rules.when request.auth.presenter: conditions dropped",
        source=f"{GENERATOR} requestPresenterGenerator.extendedPrincipal; {MODEL} New",
    ),
    EditResources(
        "when-not-values-ignored",
        "rules.when notValues: ignored (only values are checked)",
        f"{MODEL} rule.principal (notValues → principalNot)",
        kind=POLICY,
        edit=_rules(_drop_not_values),
    ),
    # --- action and scope ---
    SkipPolicies(
        "deny-ignored", "action DENY: DENY policies are not enforced", f"{BUILDER} build (DENY filter)", action="DENY"
    ),
    SkipPolicies(
        "allow-ignored",
        "action ALLOW: ALLOW policies are not enforced (a request matching none passes)",
        f"{BUILDER} build (ALLOW filter)",
        action="ALLOW",
    ),
    EditResources(
        "audit-enforced",
        "action AUDIT: enforced as DENY instead of logged (RBAC action LOG)",
        f"{BUILDER} build (auditPolicies → RBAC_LOG)",
        kind=POLICY,
        edit=_set_action("AUDIT", "DENY"),
    ),
    EditResources(
        "dry-run-ignored",
        "metadata.annotations[istio.io/dry-run]: ignored, the dry-run policy is enforced",
        f"{BUILDER} isDryRun, build (shadowRules)",
        kind=POLICY,
        edit=_drop_dry_run,
    ),
    EditResources(
        "selector-ignored",
        "spec selector: ignored, the policy applies to every workload of its namespace",
        "istio/istio pilot/pkg/model/policyattachment.go WorkloadPolicyMatcher.ShouldAttachPolicy",
        kind=POLICY,
        edit=_drop_selector,
    ),
]
