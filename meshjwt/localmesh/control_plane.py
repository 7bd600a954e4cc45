"""The local istiod: Istio resources + the modeled world → Envoy clusters and listeners."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshjwt.errors import UnsupportedField
from meshjwt.localmesh.jwks_fetch import fetch_jwks
from meshjwt.localmesh.jwks_resolver import JwksResolver, is_jwks
from meshjwt.localmesh.translate import authz
from meshjwt.localmesh.translate.authn import build_jwt_filter, parse_duration
from meshjwt.localmesh.translate.network import cluster_name, service_entry_clusters
from meshjwt.localmesh.translate.selection import applies_to, resource_id
from meshjwt.localmesh.world import Workload, World

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router",
          "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}  # fmt: skip
KINDS = {
    "RequestAuthentication": "security.istio.io",
    "AuthorizationPolicy": "security.istio.io",
    "ServiceEntry": "networking.istio.io",
    "DestinationRule": "networking.istio.io",
}


@dataclass(frozen=True)
class Proxy:
    """One Envoy listener playing one workload's proxy (a sidecar's inbound side, or a gateway)."""

    workload: Workload
    port: int
    routes: Sequence[Mapping[str, Any]]  # Envoy routes of its single virtual host

    @property
    def listener_name(self) -> str:
        return f"{self.workload.proxy}~{self.workload.name}.{self.workload.namespace}"


@dataclass
class Translation:
    """What one apply produced: Envoy resources, plus what the local istiod noticed on the way."""

    clusters: list[dict[str, Any]]
    listeners: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    #: why Envoy will refuse this config, as it refuses istiod's (a non-JWKS body inlined): the proxies then
    #: keep their previous config, which is Istio's behaviour and no translator bug
    expected_rejection: str | None = None


def check_resource(resource: Mapping[str, Any]) -> None:
    """Refuse, with one line, any resource kind the local mesh does not model."""
    kind = resource.get("kind")
    if not kind or not resource.get("apiVersion") or not isinstance(resource.get("metadata"), dict):
        raise UnsupportedField(f"a document (kind {kind!r}) without apiVersion, kind or metadata is no Istio resource")
    group = str(resource.get("apiVersion", "")).split("/")[0]
    if kind not in KINDS or KINDS[kind] != group:
        raise UnsupportedField(
            f"{kind} ({resource.get('apiVersion')}) {resource_id(resource).split(' ', 1)[1]}: the local mesh "
            f"models only {', '.join(sorted(KINDS))}; run this scenario on --target kind or cluster"
        )
    if not (resource.get("metadata") or {}).get("name"):
        raise UnsupportedField(f"{kind} without metadata.name")


class ControlPlane:
    """Translates Istio resources the way istiod does, for the proxies of the local world."""

    def __init__(self, world: World, proxies: Sequence[Proxy], base_clusters: Sequence[dict[str, Any]],
                 ca_file: str, substitute_jwks: str, path_normalization: str = "BASE",
                 secrets: Mapping[str, str] | None = None, resolver: JwksResolver | None = None,
                 space_delimited_claims: bool = True) -> None:  # fmt: skip
        self.world = world
        self.proxies = list(proxies)
        self.base_clusters = list(base_clusters)
        self.ca_file = ca_file
        self.substitute_jwks = substitute_jwks
        self.path_normalization = path_normalization
        self.secrets = dict(secrets or {})  # Secret name → CA file, for DestinationRule credentialName
        #: istiod's JWKS cache (outlives translations); without one given, istiod's defaults, no background jobs
        self.resolver = resolver or JwksResolver(self.fetch)
        #: istiod before 1.28 ignores a jwtRule's spaceDelimitedClaims (fixed to scope and permission)
        self.space_delimited_claims = space_delimited_claims

    def fetch(self, uri: str, issuer: str, timeout: float) -> Any:
        """One fetch as istiod makes it (from istio-system, the world's DNS, the run's CA): the resolver's fetcher."""
        return fetch_jwks(self.world, uri, issuer, timeout, self.ca_file)

    def translate(self, resources: Sequence[Mapping[str, Any]], fetch_mode: str = "istiod") -> Translation:
        """All clusters and listeners for ``resources`` under JWKS ``fetch_mode`` (istiod|hybrid|envoy)."""
        by_kind: dict[str, list[Mapping[str, Any]]] = {kind: [] for kind in KINDS}
        for resource in resources:
            check_resource(resource)
        notes: list[str] = []
        for resource in resources:
            rules = (resource.get("spec") or {}).get("jwtRules") or []
            for rule in [] if self.space_delimited_claims else rules:
                if rule.pop("spaceDelimitedClaims", None) is not None:
                    notes.append(f"{resource_id(resource)}: spaceDelimitedClaims ignored (honoured from Istio 1.28)")
            resource.setdefault("metadata", {}).setdefault("namespace", "default")  # type: ignore[union-attr]
            by_kind[resource["kind"]].append(resource)
        self._refuse_unmodeled_targets(by_kind["RequestAuthentication"] + by_kind["AuthorizationPolicy"])
        se_clusters = service_entry_clusters(by_kind["ServiceEntry"], by_kind["DestinationRule"],
                                             self.world, self.ca_file, self.secrets)  # fmt: skip
        registry = {c["name"] for c in se_clusters} | {c["name"] for c in self.base_clusters}
        rejections: list[str] = []

        def jwks_source(rule: Mapping[str, Any]) -> dict[str, Any]:
            return self._jwks_source(rule, fetch_mode, registry, notes, rejections)

        listeners = []
        for proxy in self.proxies:
            root = self.world.root_namespace
            ras = [r for r in by_kind["RequestAuthentication"] if applies_to(r, proxy.workload, root)]
            aps = [p for p in by_kind["AuthorizationPolicy"] if applies_to(p, proxy.workload, root)]
            gateway = proxy.workload.proxy == "gateway"  # istiod sets clear_route_cache on gateways only
            filters = [f for f in [build_jwt_filter(ras, jwks_source, clear_route_cache=gateway)] if f]
            filters += authz.build_rbac_filters(aps)
            listeners.append(self._listener(proxy, [*filters, ROUTER]))
        return Translation(clusters=[*self.base_clusters, *se_clusters], listeners=listeners, notes=notes,
                           expected_rejection=rejections[0] if rejections else None)  # fmt: skip

    def _refuse_unmodeled_targets(self, policies: Sequence[Mapping[str, Any]]) -> None:
        for policy in policies:
            for workload in self.world.workloads:
                if workload.proxy is None and (policy.get("spec") or {}).get("selector") and applies_to(
                    policy, workload, self.world.root_namespace
                ):
                    raise UnsupportedField(
                        f"{resource_id(policy)} selects {workload.name}.{workload.namespace}, which the local mesh "
                        "runs without a proxy (only httpbin, productpage and the ingress gateway have one)"
                    )

    def _jwks_source(self, rule: Mapping[str, Any], mode: str, registry: set[str], notes: list[str],
                     rejections: list[str]) -> dict[str, Any]:  # fmt: skip
        """istiod's choice: Envoy fetches (remoteJwks) or istiod inlines (localJwks), per fetch mode."""
        uri = rule.get("jwksUri", "")
        timeout = parse_duration(rule.get("timeout"))
        if mode != "istiod" and uri:
            from urllib.parse import urlsplit

            parts = urlsplit(uri)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            cluster = cluster_name(parts.hostname or "", port)
            # hybrid: istiod's model.LookupCluster matches the registry host by name only and builds
            # outbound|<port of the URI>||<host> without checking that the port exists
            host = cluster.rsplit("|", 1)[-1]
            known_host = any(name.startswith("outbound|") and name.rsplit("|", 1)[-1] == host for name in registry)
            if known_host or mode == "envoy":
                if cluster not in registry:
                    notes.append(f"no cluster {cluster} for {uri}: the proxy's fetch fails (istiod does not check)")
                return {"remoteJwks": {"httpUri": {"uri": uri, "cluster": cluster, "timeout": f"{timeout:g}s"},
                                       "cacheDuration": "300s"}}  # fmt: skip
        if rule.get("jwks"):
            return {"localJwks": {"inlineString": rule["jwks"]}}
        body, error = self.resolver.get(rule.get("issuer", ""), uri, timeout)
        if body is None:
            notes.append(f"istiod could not fetch the JWKS ({error}); inlining a substitute key")
            body = self.substitute_jwks
        elif not is_jwks(body):
            rejections.append(f"{uri or rule.get('issuer')} answered a body that is no JWKS; istiod inlined it "
                              "and the proxies refuse the update, keeping their previous config")  # fmt: skip
            notes.append(rejections[-1])
        return {"localJwks": {"inlineString": body}}

    def _listener(self, proxy: Proxy, http_filters: list[dict[str, Any]]) -> dict[str, Any]:
        hcm = {
            "@type": HCM_TYPE,
            "statPrefix": proxy.listener_name,
            "routeConfig": {
                "name": proxy.listener_name,
                "virtualHosts": [{"name": proxy.listener_name, "domains": ["*"], "routes": list(proxy.routes)}],
            },
            "httpFilters": http_filters,
            "useRemoteAddress": proxy.workload.proxy == "gateway",
            **authz.path_normalization(self.path_normalization),
        }
        return {
            "name": proxy.listener_name,
            "address": {"socketAddress": {"address": "127.0.0.1", "portValue": proxy.port}},
            "filterChains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                           "typedConfig": hcm}]}],  # fmt: skip
        }


def route_to(cluster: str, **match: Any) -> dict[str, Any]:
    """An Envoy route sending ``match`` to ``cluster`` (no upstream timeout, as Istio)."""
    return {"match": match or {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}

