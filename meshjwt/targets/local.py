"""``--target local``: the reference mesh — a real Envoy and real workloads on loopback, fed Istio YAML."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import re
import select
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from meshjwt import __version__, pki
from meshjwt.errors import ConfigError, EnvironmentProblem
from meshjwt.localmesh import processes, rundirs
from meshjwt.localmesh.control_plane import ControlPlane, Proxy, Translation, route_to
from meshjwt.localmesh.envoy import ConfigRejected, Envoy, envoy_binary
from meshjwt.localmesh.ports import free_port, require_free
from meshjwt.localmesh.translate.network import static_cluster
from meshjwt.localmesh.translate.selection import check_targeting
from meshjwt.localmesh.world import Service, Workload, World
from meshjwt.settings import Settings
from meshjwt.targets.base import Mesh, MeshInfo, Request, Response
from meshjwt.tokens import scrub

EXTERNAL_JWKS_HOST = "jwks.meshjwt.test"
EXTERNAL_JWKS_PATH = "/.well-known/jwks.json"
EXTERNAL_JWKS_CA_SECRET = "external-jwks-ca"  # meshjwt.kube.workloads creates it on real clusters
NAMESPACE, BOOKINFO_NAMESPACE, ROOT_NAMESPACE = "foo", "default", "istio-system"
#: the Bookinfo gateway VirtualService's routes (samples/bookinfo/networking/bookinfo-gateway.yaml)
BOOKINFO_ROUTES = ({"path": "/productpage"}, {"path": "/login"}, {"path": "/logout"},
                   {"prefix": "/static"}, {"prefix": "/api/v1/products"})  # fmt: skip


def substitute_jwks() -> str:
    """What istiod inlines when it cannot fetch a JWKS (1.27.8+/1.28.5+/1.29.1+): a public key whose
    private half nobody has, so every token fails. (Its exact key is istiod's; this one is made per run.)"""
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return json.dumps({"keys": [RSAAlgorithm.to_jwk(public, as_dict=True)]})


class LocalMesh(Mesh):
    """Envoy plays the httpbin and productpage sidecars (inbound) and the ingress gateway; a Python
    process runs httpbin (under waitress), a Bookinfo stand-in, nginx-proxy and the external JWKS host."""

    name = "local"

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        self.settings = settings
        self.jwks_json = jwks_json
        self.workdir: Path | None = None
        self.envoy: Envoy | None = None
        self.workloads: subprocess.Popen | None = None
        self.control_plane: ControlPlane | None = None
        self.ports: dict[str, int] = {}
        self.last: Translation | None = None
        self.applied: list[Mapping[str, Any]] = []
        self._connections: dict[int, http.client.HTTPConnection] = {}

    @classmethod
    def check_resources(cls, resources: Sequence[Mapping[str, Any]]) -> None:
        """Refuse at load, before anything runs, what this target can never apply (UnsupportedField)."""
        for resource in resources:
            check_targeting(resource)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start Envoy and the workloads in parallel, then push the empty (policy-free) mesh config."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if self.settings.flavor != "istio":
            raise ConfigError(
                f"the local reference mesh reproduces upstream Istio, not --mesh-flavor {self.settings.flavor}; "
                "qualify that mesh with --target cluster"
            )
        extra = self.settings.extra
        listener_ports = {
            "sidecar": extra.get("local_sidecar_port"),
            "productpage-sidecar": None,
            "gateway": extra.get("local_gateway_port"),
        }
        for role, port in listener_ports.items():
            listener_ports[role] = require_free(port, f"the local {role} listener") if port else free_port()
        binary = envoy_binary(extra.get("envoy_path"))
        rundirs.sweep()  # folders of earlier runs that were killed before they could clean up
        self.workdir = rundirs.new_path()  # known before it exists: an interrupt cannot orphan it
        rundirs.create(self.workdir, remove_on_interrupt=not extra.get("keep_workdir"))
        jwks_file = self.workdir / "jwks.json"
        jwks_file.write_text(self.jwks_json)
        certs = pki.write_ca_and_server_cert(self.workdir / "pki", [EXTERNAL_JWKS_HOST])
        spec = {"jwks_servers": {
            "nginx-proxy": {"routes": {"/get_jwks": str(jwks_file)}},
            "external-http": {"routes": {EXTERNAL_JWKS_PATH: str(jwks_file)}},
            "external-https": {"routes": {EXTERNAL_JWKS_PATH: str(jwks_file)},
                               "tls": {"cert": str(certs.cert), "key": str(certs.key)}},
        }}  # fmt: skip
        (self.workdir / "workloads.json").write_text(json.dumps(spec))
        timeout = self.settings.timeouts.start
        self.workloads = processes.spawn(
            [sys.executable, "-m", "meshjwt.localmesh.workloads", str(self.workdir / "workloads.json")],
            log=self.workdir / "workloads.log", stdout=subprocess.PIPE,
        )
        self.envoy = Envoy(self.workdir, binary)
        self.envoy.start(timeout)
        self.ports = {**self._await_workloads(timeout), **{f"listener:{k}": v for k, v in listener_ports.items()}}
        certs.key.unlink()  # the workloads hold it in memory now: no private key on disk for the rest of the run
        world, proxies, clusters = self._model(listener_ports)
        secrets = {EXTERNAL_JWKS_CA_SECRET: str(certs.ca_cert)}  # as the kind/cluster targets create it
        self.control_plane = ControlPlane(world, proxies, clusters, str(certs.ca_cert), substitute_jwks(),
                                          secrets=secrets)  # fmt: skip
        self.apply([])

    def _await_workloads(self, timeout: float) -> dict[str, int]:
        assert self.workloads and self.workloads.stdout
        ready, _, _ = select.select([self.workloads.stdout], [], [], timeout)
        line = self.workloads.stdout.readline() if ready else b""
        if not line:
            log = (self.workdir / "workloads.log").read_text(errors="replace").strip().splitlines()  # type: ignore[union-attr]
            raise EnvironmentProblem(f"local workloads did not start within {timeout:g}s (timeout 'start'): "
                                     f"{log[-1] if log else 'no output'}")  # fmt: skip
        return json.loads(line)["ports"]

    def _model(self, listener: Mapping[str, int]) -> tuple[World, list[Proxy], list[dict[str, Any]]]:
        """The modeled cluster: who runs where, which Service reaches which loopback port."""
        httpbin = Workload("httpbin", NAMESPACE, {"app": "httpbin", "version": "v1"}, "sidecar")
        productpage = Workload("productpage", BOOKINFO_NAMESPACE, {"app": "productpage", "version": "v1"}, "sidecar")
        gateway = Workload("istio-ingressgateway", ROOT_NAMESPACE,
                           {"app": "istio-ingressgateway", "istio": "ingressgateway"}, "gateway")  # fmt: skip
        world = World(
            root_namespace=ROOT_NAMESPACE,
            workloads=[httpbin, productpage, gateway,
                       Workload("sleep", NAMESPACE, {"app": "sleep"}),
                       Workload("nginx-proxy", NAMESPACE, {"app": "nginx-proxy"})],
            services=[Service("httpbin", NAMESPACE, 8000, listener["sidecar"]),
                      Service("productpage", BOOKINFO_NAMESPACE, 9080, listener["productpage-sidecar"]),
                      Service("nginx-proxy", NAMESPACE, 80, self.ports["nginx-proxy"]),
                      Service("istio-ingressgateway", ROOT_NAMESPACE, 80, listener["gateway"])],
            external={(EXTERNAL_JWKS_HOST, 80): self.ports["external-http"],
                      (EXTERNAL_JWKS_HOST, 443): self.ports["external-https"]},
        )  # fmt: skip
        productpage_out = f"outbound|9080||productpage.{BOOKINFO_NAMESPACE}.svc.cluster.local"
        proxies = [
            Proxy(httpbin, listener["sidecar"], [route_to("inbound|8000||httpbin")]),
            Proxy(productpage, listener["productpage-sidecar"], [route_to("inbound|9080||productpage")]),
            Proxy(gateway, listener["gateway"], [route_to(productpage_out, **m) for m in BOOKINFO_ROUTES]),
        ]
        clusters = [static_cluster("inbound|8000||httpbin", self.ports["httpbin"]),
                    static_cluster("inbound|9080||productpage", self.ports["productpage"])]
        clusters += [static_cluster(f"outbound|{s.port}||{s.fqdn}", s.backend_port) for s in world.services]
        return world, proxies, clusters

    def stop(self) -> None:
        """Stop Envoy and the workloads; remove the run directory unless asked to keep it."""
        self._close_connections()
        if self.envoy:
            self.envoy.stop()
        if self.workloads:
            processes.terminate(self.workloads)
            self.workloads = None
        if self.workdir and self.settings.extra.get("keep_workdir"):
            with contextlib.suppress(OSError):
                rundirs.keep(self.workdir)
        elif self.workdir:
            rundirs.remove(self.workdir)

    # --- the Mesh interface -----------------------------------------------------------------
    def info(self) -> MeshInfo:
        return MeshInfo(
            target=self.name,
            flavor=self.settings.flavor,
            version=self.settings.version,
            jwks_fetch_mode=self.settings.jwks_fetch_mode,
            details={"implementation": f"meshjwt local reference mesh {__version__}",
                     "envoy": self._envoy_version()},  # fmt: skip
        )

    @functools.cache  # noqa: B019 - one mesh per run; the binary does not change
    def _envoy_version(self) -> str:
        try:
            binary = envoy_binary(self.settings.extra.get("envoy_path"))
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
            found = re.search(r"version: \S+?/([\d.]+)/", out)  # "…/envoy  version: <sha>/1.40.0/Clean/…"
            return found.group(1) if found else out.strip()
        except Exception as exc:  # noqa: BLE001 - informational only
            return f"unknown ({exc})"

    def variables(self) -> Mapping[str, str]:
        return {
            "JWKS": self.jwks_json,
            "NAMESPACE": NAMESPACE,
            "BOOKINFO_NAMESPACE": BOOKINFO_NAMESPACE,
            "ROOT_NAMESPACE": ROOT_NAMESPACE,
            "EXTERNAL_JWKS_HOST": EXTERNAL_JWKS_HOST,
        }

    def apply(self, resources: Sequence[Mapping[str, Any]], *, jwks_fetch_mode: str | None = None) -> None:
        """Translate and push; returns once Envoy runs the new config (next request sees it)."""
        assert self.control_plane and self.envoy, "start() first"
        copies = [json.loads(json.dumps(r)) for r in resources]
        mode = jwks_fetch_mode or self.settings.jwks_fetch_mode
        translation = self.control_plane.translate(copies, mode)
        try:
            self.envoy.push(translation.clusters, translation.listeners, self.settings.timeouts.apply)
        except ConfigRejected:
            if self.last:  # Envoy may have taken the clusters but not the listeners: put the last good back
                self.envoy.push(self.last.clusters, self.last.listeners, self.settings.timeouts.apply)
            raise
        self.last, self.applied = translation, copies
        self._close_connections()  # new connections land on the new listener config

    def clear(self) -> None:
        self.apply([])

    def request(self, request: Request) -> Response:
        port = self.ports["listener:sidecar" if request.client == "mesh" else "listener:gateway"]
        host = request.host or (f"httpbin.{NAMESPACE}:8000" if request.client == "mesh" else "bookinfo.example.com")
        headers = {"Host": host, **request.headers}
        for attempt in range(2):  # a pooled connection may have been closed by Envoy: retry once, fresh
            conn = self._connections.get(port)
            if conn is None:
                conn = self._connections[port] = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=self.settings.timeouts.request
                )
            try:
                conn.request(request.method, request.path, headers=headers)
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                if response.will_close:
                    self._drop(port)
                return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(port)
                if attempt:
                    return Response(0, error=f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    def _drop(self, port: int) -> None:
        conn = self._connections.pop(port, None)
        if conn:
            conn.close()

    def _close_connections(self) -> None:
        for port in list(self._connections):
            self._drop(port)

    def artifacts(self, directory: str) -> list[str]:
        """The generated Envoy config, the applied resources, istiod notes and the logs."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "applied-resources.json": json.dumps(self.applied, indent=1),
            "envoy-config.json": json.dumps(self.envoy.last_config if self.envoy else {}, indent=1),
            "istiod-notes.txt": "\n".join(self.last.notes if self.last else []),
            "envoy.log": self.envoy.log_tail(400) if self.envoy else "",
        }
        for name, text in files.items():
            (out / name).write_text(scrub(text))  # inline JWKS hold the HS secrets
        return [str(out / name) for name in files]

