"""Istio's validation webhook for RequestAuthentication (``pkg/config/validation/validation.go``,
``validateJwtRule``), as far as the local mesh models it: refused resources never reach the translator."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meshjwt.errors import ApplyRefused

WEBHOOK = 'admission webhook "validation.istio.io" denied the request: configuration is invalid'


def _jwks_error(text: str) -> str | None:
    """Why Istio's ``jwk.Parse`` would refuse ``text`` (a JWK or a JWK set), or None."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return f"jwks parse error: {exc}"
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and (isinstance(keys, list) or "kty" in doc):
        return None
    return "jwks parse error: failed to unmarshal JWK set"


def jwt_rule_errors(rule: Mapping[str, Any]) -> list[str]:
    """The webhook's complaints about one jwtRule (empty: accepted)."""
    errors = ["audience must be non-empty string" for audience in rule.get("audiences") or [] if not audience]
    if not rule.get("issuer") and not rule.get("jwksUri"):
        errors.append("issuer or jwksUri must be non-empty string")
    uri = rule.get("jwksUri") or ""
    if uri and not uri.lower().startswith(("http://", "https://")):
        errors.append(f"jwks URI {uri!r}: scheme must be http or https")
    if rule.get("jwks"):
        problem = _jwks_error(str(rule["jwks"]))
        if problem:
            errors.append(problem)
    errors += ["location header name must be non-empty string"
               for header in rule.get("fromHeaders") or [] if not (header or {}).get("name")]  # fmt: skip
    errors += ["location query must be non-empty string" for param in rule.get("fromParams") or [] if not param]
    errors += ["cookie name must be non-empty string" for cookie in rule.get("fromCookies") or [] if not cookie]
    for claim in rule.get("outputClaimToHeaders") or []:
        if not claim.get("header") or not claim.get("claim"):
            errors.append("outputClaimToHeaders header and claim must be non-empty string")
    return errors


def check(resource: Mapping[str, Any]) -> None:
    """Refuse ``resource`` as the webhook would (:class:`ApplyRefused` with its message)."""
    if resource.get("kind") != "RequestAuthentication":
        return
    errors = [e for rule in (resource.get("spec") or {}).get("jwtRules") or [] for e in jwt_rule_errors(rule)]
    if errors:
        meta = resource.get("metadata") or {}
        raise ApplyRefused(f"RequestAuthentication {meta.get('namespace', 'default')}/{meta.get('name')}: "
                           f"{WEBHOOK}: {'; '.join(errors)}")  # fmt: skip
