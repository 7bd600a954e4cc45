"""Who runs where in the modeled cluster: namespaces, Services, proxies and the gateway's routes.

One source for the topology: the local target fills it from the sample workloads' manifests
(``manifests/workloads/``), the rehearsal's simulated cluster from the objects the kind and cluster
targets really created. :func:`build` turns it into the local istiod's world, its proxies and the
clusters that reach each workload's loopback server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshjwt.localmesh.control_plane import Proxy, route_to
from meshjwt.localmesh.translate.network import static_cluster
from meshjwt.localmesh.world import Service, Workload, World
from meshjwt.samples import EXTERNAL_JWKS_HOST, GATEWAY_LABELS, HTTPBIN_LABELS, workloads_dir

#: the proxies the local mesh runs (listener roles) and the workload servers behind them
LISTENERS = ("sidecar", "productpage-sidecar", "gateway")
BACKENDS = ("httpbin", "productpage", "nginx-proxy", "external-http", "external-https")


@dataclass(frozen=True)
class Topology:
    """Namespaces of the sample workloads, the external JWKS host names, and the gateway's routes."""

    namespace: str = "foo"  # httpbin, sleep, nginx-proxy
    bookinfo_namespace: str = "default"
    root_namespace: str = "istio-system"  # istiod and the ingress gateway
    external_namespace: str = "jwks-external"  # the external JWKS endpoint's Service
    #: names outside the cluster that reach the external JWKS endpoint (kind: CoreDNS rewrites them)
    external_hosts: tuple[str, ...] = (EXTERNAL_JWKS_HOST,)
    gateway_routes: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)  # Envoy route matches


def virtual_service_routes(virtual_service: Mapping[str, Any]) -> tuple[dict[str, str], ...]:
    """Envoy route matches for a VirtualService's ``http[].match[].uri`` (exact and prefix)."""
    matches: list[dict[str, str]] = []
    for http in (virtual_service.get("spec") or {}).get("http") or []:
        for match in http.get("match") or [{"uri": {"prefix": "/"}}]:
            uri = match.get("uri") or {}
            if "exact" in uri:
                matches.append({"path": uri["exact"]})
            elif "prefix" in uri:
                matches.append({"prefix": uri["prefix"]})
    return tuple(matches)


def sample_topology() -> Topology:
    """The local target's topology: default namespaces, routes from ``bookinfo-gateway.yaml``."""
    docs = yaml.safe_load_all((workloads_dir() / "bookinfo-gateway.yaml").read_text())
    service = next(d for d in docs if d and d.get("kind") == "VirtualService")
    return Topology(gateway_routes=virtual_service_routes(service))


def build(
    topology: Topology,
    listeners: Mapping[str, int],
    backends: Mapping[str, int],
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[World, list[Proxy], list[dict[str, Any]]]:
    """The local istiod's world, its proxies (one Envoy listener each) and the base clusters.

    ``listeners`` gives the loopback port of each proxy role (:data:`LISTENERS`), ``backends`` that of
    each workload server (:data:`BACKENDS`, the external ones optional); ``labels`` may give a
    workload's pod labels (by workload name) where they differ from the samples'."""
    t, labels = topology, labels or {}
    httpbin = Workload("httpbin", t.namespace, labels.get("httpbin", HTTPBIN_LABELS), "sidecar")
    productpage = Workload("productpage", t.bookinfo_namespace,
                           labels.get("productpage", {"app": "productpage", "version": "v1"}), "sidecar")  # fmt: skip
    gateway = Workload("istio-ingressgateway", t.root_namespace, labels.get("istio-ingressgateway", GATEWAY_LABELS),
                       "gateway")  # fmt: skip
    services = [Service("httpbin", t.namespace, 8000, listeners["sidecar"]),
                Service("productpage", t.bookinfo_namespace, 9080, listeners["productpage-sidecar"]),
                Service("nginx-proxy", t.namespace, 80, backends["nginx-proxy"]),
                Service("istio-ingressgateway", t.root_namespace, 80, listeners["gateway"])]  # fmt: skip
    external: dict[tuple[str, int], int] = {}
    for port, backend in ((80, "external-http"), (443, "external-https")):
        if backend in backends:
            services.append(Service("jwks-external", t.external_namespace, port, backends[backend]))
            external.update({(host, port): backends[backend] for host in t.external_hosts})
    world = World(
        root_namespace=t.root_namespace,
        workloads=[httpbin, productpage, gateway, Workload("sleep", t.namespace, {"app": "sleep"}),
                   Workload("nginx-proxy", t.namespace, {"app": "nginx-proxy"})],
        services=services,
        external=external,
    )  # fmt: skip
    productpage_out = f"outbound|9080||productpage.{t.bookinfo_namespace}.svc.cluster.local"
    proxies = [
        Proxy(httpbin, listeners["sidecar"], [route_to("inbound|8000||httpbin")]),
        Proxy(productpage, listeners["productpage-sidecar"], [route_to("inbound|9080||productpage")]),
        Proxy(gateway, listeners["gateway"], [route_to(productpage_out, **m) for m in t.gateway_routes]),
    ]
    clusters = [static_cluster("inbound|8000||httpbin", backends["httpbin"]),
                static_cluster("inbound|9080||productpage", backends["productpage"])]  # fmt: skip
    clusters += [static_cluster(f"outbound|{s.port}||{s.fqdn}", s.backend_port) for s in world.services]
    return world, proxies, clusters


def connect_to(world: World) -> list[str]:
    """curl ``--connect-to`` arguments sending every Service name (short, namespaced, FQDN) and external
    host of ``world`` to its loopback port: how a pod's DNS and Service VIPs would route it."""
    args: list[str] = []
    for service in world.services:
        for host in (service.name, f"{service.name}.{service.namespace}", f"{service.name}.{service.namespace}.svc",
                     service.fqdn):  # fmt: skip
            args += ["--connect-to", f"{host}:{service.port}:127.0.0.1:{service.backend_port}"]
    for (host, port), backend in world.external.items():
        args += ["--connect-to", f"{host}:{port}:127.0.0.1:{backend}"]
    return args
