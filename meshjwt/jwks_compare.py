"""istiod's push decision after a JWKS refresh: ``compareJWKSResponse`` (istio/istio
``pilot/pkg/model/jwks_resolver.go``), and the comparison every wait of the suite makes with it."""

from __future__ import annotations

import json
from typing import Any


def _sorted_keys(keys: list[Any]) -> list[Any]:
    """``sort.Slice`` by ``kid`` (keys without a string kid: by their number of members, as the Go comparator)."""
    def order(key: Any) -> tuple[int, str, int]:
        kid = key.get("kid") if isinstance(key, dict) else None
        return (0, kid, 0) if isinstance(kid, str) else (1, "", len(key) if isinstance(key, dict) else 0)

    return sorted(keys, key=order)


def compare_jwks_response(old: str, new: str) -> tuple[bool, str | None]:
    """(istiod pushes, why it logged an error). Source: ``compareJWKSResponse``:
    - equal strings: no push;
    - ``new`` not JSON: no push, an error (the refresh cycle counts as failed; the body is cached all the same);
    - ``old`` not JSON (e.g. the empty entry of a failed fetch): push;
    - both with a ``keys`` array: push only if the arrays sorted by ``kid`` differ (``reflect.DeepEqual``), so a
      change outside ``keys`` (an extra field, member or key order) never pushes;
    - otherwise: push."""
    if old == new:
        return False, None
    try:
        new_doc = json.loads(new)
    except ValueError as exc:
        return False, f"New JWKs public key JSON is not parseable: {exc}"
    try:
        old_doc = json.loads(old)
    except ValueError:
        return True, None
    old_keys = old_doc.get("keys") if isinstance(old_doc, dict) else None
    new_keys = new_doc.get("keys") if isinstance(new_doc, dict) else None
    if isinstance(old_keys, list) and isinstance(new_keys, list):
        return _sorted_keys(old_keys) != _sorted_keys(new_keys), None
    return True, None


def same_keys(inlined: str | None, served: str) -> bool:
    """Whether a proxy that inlines ``inlined`` runs the keys of ``served`` as istiod sees them: no push would
    follow a refresh from one to the other (``compareJWKSResponse`` says no change, and no error)."""
    if inlined is None:
        return False
    changed, error = compare_jwks_response(inlined, served)
    return not changed and error is None
