"""The in-cluster JWKS server (``manifests/workloads/nginx-proxy.yaml``) as plans: the stock nginx configuration
for each way the JWKS lifecycle cases make it answer, its ConfigMaps, and the inline JWKS a proxy runs.

Only stock nginx directives, checked against a real nginx: ``alias`` (the keys), ``return 302`` (a redirect to a
second location serving the keys), ``return 200 '…'`` (another body) and ``limit_rate`` in an
``if ($arg_lifecycle)`` block (slow for the scenarios' fetches, which carry that query; not for the readiness
probe, which has none and would otherwise fail its 1 s timeout).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from meshjwt.jwks_compare import same_keys

DEPLOYMENT = "nginx-proxy"
CONF_CONFIGMAP = "nginx-proxy-conf"
JWKS_CONFIGMAP = "nginx-proxy-jwks"
JWKS_FILE = "/jwks/jwks.json"  # where the Deployment mounts ConfigMap nginx-proxy-jwks
REDIRECT_TARGET = "/get_jwks_real"
#: the kid prefix of a marker key: one extra public key that no token uses. istiod pushes a refreshed JWKS only if
#: its ``keys`` array changed (``compareJWKSResponse``, istio/istio pilot/pkg/model/jwks_resolver.go), so a marker
#: must change ``keys``; it verifies every run token as the unmarked set does
MARKER_KID = "meshjwt-refresh-"
SERVED_ANNOTATION = "meshjwt.io/jwks-served"  # on the pod template: the hash of what nginx-proxy serves


@dataclass(frozen=True)
class Answer:
    """How nginx-proxy answers ``/get_jwks``: the keys (default), a 302 to them, another 200 body, or the keys
    throttled to ``rate`` bytes/s."""

    body: str | None = None
    redirect: bool = False
    rate: int | None = None
    status: int = 200  # with ``body``: another status (503: a failing server whose endpoints stay)


def quote(text: str) -> str:
    """An nginx single-quoted string (backslash escapes ``\\`` and ``'``); refuses ``$`` (a variable to nginx)."""
    if "$" in text:
        raise ValueError("nginx would expand '$' in a return body: choose a body without it")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def slow_rate(size: int, seconds: float) -> int:
    """The ``limit_rate`` (bytes/s) at which an answer of ``size`` bytes takes at least ``seconds``."""
    if seconds <= 0:
        raise ValueError("a slow JWKS server needs a positive delay")
    return max(1, math.floor(size / seconds))


def conf(answer: Answer = Answer()) -> str:
    """``default.conf`` of ConfigMap nginx-proxy-conf for ``answer`` (the default is the manifest's behaviour)."""
    keys = ["default_type application/json;", f"alias {JWKS_FILE};"]
    if answer.redirect:
        jwks = [f"return 302 {REDIRECT_TARGET}$is_args$args;"]
    elif answer.body is not None:
        jwks = ["default_type text/html;", f"return {int(answer.status)} {quote(answer.body)};"]
    elif answer.rate is not None:
        jwks = [*keys, f"if ($arg_lifecycle) {{ limit_rate {int(answer.rate)}; }}"]
    else:
        jwks = keys
    lines = ["server {", "  listen 80;", "  location = /get_jwks {", *(f"    {x}" for x in jwks), "  }"]
    if answer.redirect:
        lines += [f"  location = {REDIRECT_TARGET} {{", *(f"    {x}" for x in keys), "  }"]
    lines += ["  location = /healthz {", '    return 200 "ok";', "  }", "}"]
    return "\n".join(lines) + "\n"


def configmaps(namespace: str, answer: Answer, jwks_json: str) -> list[dict[str, Any]]:
    """ConfigMaps nginx-proxy-conf and nginx-proxy-jwks for ``answer`` and the served keys."""
    def configmap(name: str, key: str, text: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": {key: text}}  # fmt: skip

    return [configmap(CONF_CONFIGMAP, "default.conf", conf(answer)), configmap(JWKS_CONFIGMAP, "jwks.json", jwks_json)]


def marked(jwks_json: str, marker: str) -> str:
    """``jwks_json`` with one extra public key, kid ``meshjwt-refresh-<marker>`` (a fresh EC P-256 key whose
    private half is dropped): a ``keys`` array istiod has not inlined yet, trusted for no token of the run."""
    from meshjwt.keys import generate_key  # cryptography: only when a rotation needs it

    doc = json.loads(jwks_json)
    keys = [k for k in doc.get("keys", []) if not str(k.get("kid", "")).startswith(MARKER_KID)]
    extra = {**generate_key("ES256", kid=f"{MARKER_KID}{marker}").jwk, "use": "sig", "alg": "ES256"}
    return json.dumps({**doc, "keys": [*keys, extra]}, separators=(",", ":"))


def replicas_patch(replicas: int) -> list[str]:
    """``kubectl patch`` arguments setting nginx-proxy's replicas (needs only ``patch deployments``)."""
    return ["patch", "deployment", DEPLOYMENT, "--type", "merge", "-p", json.dumps({"spec": {"replicas": replicas}})]


def restart_patch(answer: Answer, jwks_json: str) -> list[str]:
    """``kubectl patch`` arguments putting the served configuration's hash on nginx-proxy's pod template: a
    rollout exactly when what it serves changed (``kubectl rollout restart`` refuses a second restart within
    the same second, which back-to-back lifecycle operations reach)."""
    digest = hashlib.sha256(json.dumps([conf(answer), jwks_json]).encode()).hexdigest()[:16]
    patch = {"spec": {"template": {"metadata": {"annotations": {SERVED_ANNOTATION: digest}}}}}
    return ["patch", "deployment", DEPLOYMENT, "--type", "merge", "-p", json.dumps(patch)]


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def inline_jwks(config_dump: str, issuers: set[str]) -> list[str | None]:
    """The JWKS a proxy's jwt_authn providers for ``issuers`` hold inline (istiod mode), one per provider;
    None for a provider that fetches by itself (``remote_jwks``)."""
    found: list[str | None] = []
    for node in _walk(json.loads(config_dump)):
        if not str(node.get("@type", "")).endswith("jwt_authn.v3.JwtAuthentication"):
            continue
        for provider in (node.get("providers") or {}).values():
            if str(provider.get("issuer", "")) in issuers:
                local = provider.get("local_jwks") or provider.get("localJwks") or {}
                found.append(local.get("inline_string", local.get("inlineString")))
    return found


def same_jwks(inlined: str | None, served: str) -> bool:
    """Whether a proxy's inline JWKS has the served keys as istiod compares them (``compareJWKSResponse``:
    the ``keys`` arrays sorted by kid; what lies outside ``keys`` never makes istiod push, so a wait must not
    look at it)."""
    return same_keys(inlined, served)
