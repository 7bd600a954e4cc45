"""Named features: what a scenario needs, and which ones a mesh lacks (skipped and reported unsupported).

A feature is unsupported when the flavour/version table says so, when ``--exempt-features`` names it, or
when ``--supported-features`` is given and does not name it. Unsupported never counts as failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshjwt.errors import ConfigError
from meshjwt.keys import ALGORITHMS, RSA_ALGORITHMS

FEATURES: dict[str, str] = {
    "RequestAuthentication": "RequestAuthentication validates tokens (401 on an invalid one)",
    "AuthorizationPolicy": "AuthorizationPolicy with request principals (403 when denied)",
    "JWT.Audiences": "audiences of a jwtRule (403 for another audience)",
    "JWKS.Inline": "keys inlined in the jwtRule (jwks)",
    "JWKS.InCluster": "jwksUri served by a Service in the cluster (nginx-proxy)",
    "JWKS.External": "jwksUri outside the cluster",
    "JWKS.ExternalTLS": "https jwksUri outside the cluster",
    "JWKS.EnvoyFetch": "the proxy fetches the JWKS (PILOT_JWT_ENABLE_REMOTE_JWKS=envoy)",
    "Authz.PathExclusion": "DENY with notRequestPrincipals and notPaths skips JWT on some paths",
    "Authz.PathNormalization": "meshConfig pathNormalization decides the path policies match (each mode)",
    "Ingress": "requests through the ingress gateway",
    "JWKS.Lifecycle": "the JWKS server changes over time (rotation, outage, late start) and istiod's cache follows",
    "Validation.Webhook": "Istio's validation webhook refuses invalid resources at apply time",
    **{f"JWT.{alg}": f"tokens signed with {alg}" for alg in ALGORITHMS},
}


@dataclass(frozen=True)
class Limitation:
    """A row of the flavour/version table: these features are missing from these meshes, and why."""

    features: tuple[str, ...]
    flavor: str
    version_below: str
    reason: str


#: Known limitations by mesh flavour and version. The FAQ's "RSA only before 1.13" for ASM is *not*
#: here: it is a documented behaviour the algorithms scenario asserts (non-RSA tokens get 401).
TABLE: tuple[Limitation, ...] = (
    Limitation(tuple(f"JWT.{a}" for a in ALGORITHMS if a not in RSA_ALGORITHMS), "istio", "1.8",
               "the Envoy of Istio before about 1.8 verifies RSA tokens only"),
    Limitation(("JWKS.EnvoyFetch",), "istio", "1.12", "PILOT_JWT_ENABLE_REMOTE_JWKS appeared in Istio 1.12"),
)  # fmt: skip


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def parse_list(values: Iterable[str] | str | None) -> frozenset[str] | None:
    """Comma-separated and/or repeated option values → a set (None when not given)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    names = frozenset(name.strip() for value in values for name in str(value).split(",") if name.strip())
    return names


def check_names(names: Iterable[str], option: str, declared: Iterable[str] = ()) -> None:
    """Refuse feature names nobody declares (a typo would silently skip or run everything)."""
    known = set(FEATURES) | set(declared)
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"{option}: unknown feature {unknown[0]!r}; known: {', '.join(sorted(known))}")


def unsupported(
    features: Iterable[str],
    flavor: str,
    version: str,
    supported: frozenset[str] | None = None,
    exempt: frozenset[str] = frozenset(),
) -> Mapping[str, str]:
    """Feature → why it is unsupported, for the features of one case on one mesh."""
    reasons: dict[str, str] = {}
    for feature in features:
        if feature in exempt:
            reasons[feature] = "exempted with --exempt-features"
        elif supported is not None and feature not in supported:
            reasons[feature] = "not listed in --supported-features"
        else:
            for row in TABLE:
                older = _version(version) < _version(row.version_below)
                if feature in row.features and flavor == row.flavor and older:
                    reasons[feature] = f"{row.reason} ({flavor} {version})"
    return reasons
