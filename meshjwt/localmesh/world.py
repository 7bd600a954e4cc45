"""The cluster the local mesh pretends to be: namespaces, workloads, Services, external hosts, and DNS.

Nothing here ever touches real DNS or the network: every name resolves to a loopback port of this
run, or to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CLUSTER_DOMAIN = "svc.cluster.local"


@dataclass(frozen=True)
class Workload:
    """A pod of the modeled cluster; ``proxy`` says which Envoy listener plays its proxy (if any)."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    proxy: str | None = None  # "sidecar" | "gateway" | None (not modeled: no policy may select it)


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service: ``name.namespace``:``port`` → the loopback port of its backend."""

    name: str
    namespace: str
    port: int
    backend_port: int

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.{CLUSTER_DOMAIN}"


@dataclass
class World:
    """Workloads and Services of the modeled cluster plus the external hosts it can reach."""

    root_namespace: str = "istio-system"
    workloads: list[Workload] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    #: (external hostname, port) → loopback port of the server standing in for it
    external: dict[tuple[str, int], int] = field(default_factory=dict)

    def service_by_fqdn(self, host: str, port: int) -> Service | None:
        """The Service whose FQDN and port are exactly these (how Istio's registry is keyed)."""
        return next((s for s in self.services if s.fqdn == host and s.port == port), None)

    def resolve(self, host: str, port: int, from_namespace: str) -> int | None:
        """Cluster DNS as seen from a pod in ``from_namespace`` (search path ``<ns>.svc.cluster.local``).

        Returns the loopback port serving ``host:port``, or None when the name does not resolve or the
        port is closed.
        """
        host = host.lower().rstrip(".")
        if (host, port) in self.external:
            return self.external[(host, port)]
        candidates = [host]
        if host.count(".") < 4:  # ndots:5 → the search path is tried first, as in a pod
            candidates = [f"{host}.{from_namespace}.{CLUSTER_DOMAIN}", f"{host}.{CLUSTER_DOMAIN}",
                          f"{host}.cluster.local", host]  # fmt: skip
        for name in candidates:
            service = self.service_by_fqdn(name, port)
            if service:
                return service.backend_port
        return None
