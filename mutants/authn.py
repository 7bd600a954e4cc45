"""Mutants of RequestAuthentication ``jwtRules`` (istiod's ``convertToEnvoyJwtConfig`` → Envoy ``jwt_authn``).

One mutant (at least) per jwtRules field the local mesh translates, plus the requirement tree istiod builds for
several rules. The scenarios that kill them: ``suites/scenarios/11-jwt-rule-fields.yaml`` (``jwt-rule-*``) and,
for issuer, jwks, jwksUri and timeout, the FAQ and lifecycle scenarios."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from meshjwt.localmesh.mutation import Json
from mutants.base import EditFilter, EditResources, IgnoreField, Mutant, each_provider, walk

AUTHN = "istio/istio pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig"
EXTRACTOR = "envoyproxy/envoy source/extensions/filters/http/jwt_authn/extractor.cc"
AUTHENTICATOR = "envoyproxy/envoy source/extensions/filters/http/jwt_authn/authenticator.cc"
VERIFIER = "envoyproxy/envoy source/extensions/filters/http/jwt_authn/verifier.cc"
RESOLVER = "istio/istio pilot/pkg/model/jwks_resolver.go"
RA = "RequestAuthentication"


def _drop_issuer(provider: Json) -> None:
    provider.pop("issuer", None)


def _qualify_short_jwks_host(resource: Json) -> None:
    """istiod resolves a jwksUri's short host as if from the RA's namespace (``host`` → ``host.<ns>``)."""
    namespace = (resource.get("metadata") or {}).get("namespace", "default")
    for rule in (resource.get("spec") or {}).get("jwtRules") or []:
        uri = rule.get("jwksUri")
        if not uri:
            continue
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if host and "." not in host:
            netloc = f"{host}.{namespace}" + (f":{parts.port}" if parts.port else "")
            rule["jwksUri"] = urlunsplit(parts._replace(netloc=netloc))


def _multi_rule_branches(config: Json) -> list[Json]:
    """The ``requires_all`` branch of each rule's requirement (present only with several providers)."""
    branches = []
    for rule in config.get("rules", []):
        for node in walk(rule.get("requires", {})):
            if "requiresAll" in node:
                branches.append(node)
    return branches


def _allow_missing_or_failed(config: Json) -> None:
    """In the several-rules tree, each ``any(origins-i, allow_missing)`` gets ``allow_missing_or_failed``."""
    for branch in _multi_rule_branches(config):
        for node in walk(branch):
            if "allowMissing" in node:
                node.pop("allowMissing")
                node["allowMissingOrFailed"] = {}


def _first_rule_only(config: Json) -> None:
    """With several rules the requirement is the one-rule tree of ``origins-0``: the other providers are
    configured but never required, so a token of another rule's issuer is refused as of an unknown issuer."""
    for rule in config.get("rules", []):
        if _multi_rule_branches({"rules": [rule]}):
            rule["requires"] = {"requiresAny": {"requirements": [{"providerName": "origins-0"}, {"allowMissing": {}}]}}


MUTANTS: list[Mutant] = [
    IgnoreField("audiences-ignored", RA, "audiences",
                breaks="jwtRules.audiences: a token for any audience is accepted", source=AUTHN),
    EditFilter("issuer-not-checked", "jwtRules.issuer: the provider is programmed without its issuer, so a token "
               "of any issuer signed by a configured key is accepted",
               f"{AUTHN} (issuer); {EXTRACTOR} JwtIssuerChecker (an empty issuer allows all)",
               edit=each_provider(_drop_issuer)),
    IgnoreField("inline-jwks-ignored", RA, "jwks",
                breaks="jwtRules.jwks: the inline key set is ignored and istiod falls back to OpenID discovery "
                "at the issuer (no keys: its substitute key set), so valid tokens are refused",
                source=f"{AUTHN} (local_jwks from jwks); istio/api security/v1beta1/request_authentication.proto"),
    EditResources("jwks-uri-short-host-from-ra-namespace", "jwtRules.jwksUri: istiod resolves a short host as if "
                  "from the RequestAuthentication's namespace instead of its own (istio-system)",
                  f"{RESOLVER} (istiod's own HTTP client); reference §3 (short host)",
                  kind=RA, edit=_qualify_short_jwks_host),
    IgnoreField("from-headers-ignored", RA, "fromHeaders",
                breaks="jwtRules.fromHeaders: the token is looked for only in Authorization: Bearer and "
                "access_token", source=f"{AUTHN} (from_headers); {EXTRACTOR} addProvider (default locations)"),
    IgnoreField("from-headers-prefix-ignored", RA, "prefix", within="fromHeaders",
                breaks="jwtRules.fromHeaders[].prefix: the header's whole value is taken as the token",
                source=f"{AUTHN} (value_prefix); {EXTRACTOR} extract (value_prefix)"),
    IgnoreField("from-params-ignored", RA, "fromParams",
                breaks="jwtRules.fromParams: the token is looked for only in Authorization: Bearer and "
                "access_token", source=f"{AUTHN} (from_params); {EXTRACTOR} addProvider (default locations)"),
    IgnoreField("from-cookies-ignored", RA, "fromCookies",
                breaks="jwtRules.fromCookies: a token in a cookie is never read",
                source=f"{AUTHN} (from_cookies); {EXTRACTOR} extract (cookie locations)"),
    IgnoreField("forward-original-token-ignored", RA, "forwardOriginalToken",
                breaks="jwtRules.forwardOriginalToken: the token header is removed even when it should be "
                "forwarded", source=f"{AUTHN} (forward); {AUTHENTICATOR} (removeJwt unless forward)"),
    IgnoreField("output-payload-to-header-ignored", RA, "outputPayloadToHeader",
                breaks="jwtRules.outputPayloadToHeader: the verified payload is not passed upstream in a header",
                source=f"{AUTHN} (forward_payload_header)"),
    IgnoreField("output-claim-to-headers-ignored", RA, "outputClaimToHeaders",
                breaks="jwtRules.outputClaimToHeaders: claims are not copied to headers, and a client's own "
                "header of that name is not removed", source=f"{AUTHN} (claim_to_headers); {EXTRACTOR} sanitize"),
    IgnoreField("timeout-ignored", RA, "timeout",
                breaks="jwtRules.timeout: istiod's default 5 s bounds the JWKS fetch instead of the rule's",
                source=f"{AUTHN} / {RESOLVER} (timeout, 1.22+)"),
    IgnoreField("space-delimited-claims-ignored", RA, "spaceDelimitedClaims",
                breaks="jwtRules.spaceDelimitedClaims: only scope and permission are split into lists (the "
                "pre-1.28 behaviour on 1.28+)",
                source=f"{AUTHN} (normalize_payload_in_metadata.space_delimited_claims, 1.28+)"),
    EditFilter("multi-rule-allow-missing-or-failed", "jwtRules (several rules): the requirement tree uses "
               "allow_missing_or_failed, so a present but invalid token passes when two rules apply",
               f"{AUTHN} (requires_any [origins-i..., requires_all [any(origins-i, allow_missing)]]); {VERIFIER}",
               edit=_allow_missing_or_failed),
    EditFilter("multi-rule-first-rule-only", "jwtRules (several rules): the one-rule requirement "
               "requires_any [origins-0, allow_missing] is built whatever the number of rules, so a valid token of "
               "another rule's issuer is refused",
               f"{AUTHN} (requires_any [origins-i..., requires_all [any(origins-i, allow_missing)]]); {VERIFIER}",
               edit=_first_rule_only),
]  # fmt: skip
