"""The simulated cluster's data plane: the local mesh's real Envoy and workload servers, configured from
what the API stand-in holds — the Istio resources, the workloads' namespaces and labels, the JWKS
ConfigMaps, the TLS Secrets, CoreDNS's rewrites and istiod's settings — the way istiod and kubelet would.

nginx-proxy serves what its newest ready pod mounted when it started (ConfigMaps nginx-proxy-conf, read as nginx
would by ``rehearsal.nginx``, and nginx-proxy-jwks); with no ready pod (scaled to 0) connections to it close
unanswered. istiod's JWKS cache refreshes every PILOT_JWT_PUB_KEY_REFRESH_INTERVAL of its Deployment.

Requests reach it as the targets send them: ``kubectl exec <sleep> -c sleep -- curl …`` runs this
machine's real curl with every Service name connected to its loopback port, and the gateway listens
where kind's port mapping (or the cluster leg's ingress URL) points.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from meshjwt.errors import MeshJwtError
from meshjwt.kube.workloads import EXTERNAL_JWKS_CA_SECRET
from meshjwt.localmesh import processes
from meshjwt.localmesh import workloads as workload_servers
from meshjwt.localmesh.control_plane import KINDS, ControlPlane
from meshjwt.localmesh.envoy import Envoy, envoy_binary
from meshjwt.localmesh.jwks_resolver import ISTIOD_REFRESH_INTERVAL, JwksResolver
from meshjwt.localmesh.ports import free_port
from meshjwt.localmesh.topology import LISTENERS, Topology, build, connect_to, virtual_service_routes
from meshjwt.localmesh.translate.authn import parse_duration
from meshjwt.localmesh.world import CLUSTER_DOMAIN, World
from meshjwt.samples import EXTERNAL_JWKS_PATH, NGINX_JWKS_PATH
from meshjwt.settings import JWKS_FETCH_MODES
from meshjwt.targets.local import substitute_jwks
from meshjwt.tokens import scrub
from rehearsal import nginx
from rehearsal.nginx import NginxConfError

log = logging.getLogger("rehearsal.dataplane")

Store = Any  # rehearsal.apiserver's store: get/list/subscribe
#: the Istio kinds the local istiod translates, by their API resource names
ISTIO_RESOURCES = {
    "RequestAuthentication": "requestauthentications.security.istio.io",
    "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
    "ServiceEntry": "serviceentries.networking.istio.io",
    "DestinationRule": "destinationrules.networking.istio.io",
}
assert set(ISTIO_RESOURCES) == set(KINDS)
REWRITE = re.compile(r"^\s*rewrite\s+name\s+exact\s+(\S+)\s+(\S+)\s*$", re.M)
CONFIG_DUMP = ["pilot-agent", "request", "GET", "config_dump"]


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """Running with condition Ready True (what puts a pod behind its Service)."""
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def listener_name(entry: Mapping[str, Any]) -> str:
    """A config_dump listener's name; Envoy names an entry that only records a refused update
    (``error_state``) by its failed configuration."""
    failed = (entry.get("error_state") or {}).get("failed_configuration") or {}
    return str(entry.get("name") or failed.get("name") or "")


def secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """A Secret's value, from ``data`` (base64) or ``stringData`` (as applied)."""
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    encoded = (secret.get("data") or {}).get(key)
    return base64.b64decode(encoded).decode() if encoded else None


@functools.cache
def system_roots() -> str:
    """This machine's CA bundle (read once): istiod trusts it, plus its extra root CA."""
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    return system.read_text() if system.is_file() else ""


def with_routes(config: bytes, routes: list[str]) -> bytes:
    """A curl config whose every transfer connects Service names to their loopback ports: the pod's DNS
    and Service routing (curl forgets ``--connect-to`` at each ``next``)."""
    lines = [f'connect-to = "{value}"' for flag, value in zip(routes[::2], routes[1::2], strict=True)
             if flag == "--connect-to"]  # fmt: skip
    block = "\n".join(lines)
    out = [block]
    for line in config.decode().splitlines():
        out.append(line)
        if line.strip() == "next":
            out.append(block)
    return ("\n".join(out) + "\n").encode()


class DataPlane:
    """Envoy + workload servers, reconciled from the API stand-in's stores after every change."""

    def __init__(self, workdir: Path, workloads: Store, istio: Store, *, gateway_port: int | None = None,
                 istiod_settings: Callable[..., Any] | None = None) -> None:  # fmt: skip
        self.workdir = workdir
        self.workloads, self.istio = workloads, istio
        self.istiod_settings = istiod_settings
        self.listeners = {role: free_port() for role in LISTENERS}
        if gateway_port:
            self.listeners["gateway"] = gateway_port
        self.envoy: Envoy | None = None
        self.servers: subprocess.Popen | None = None
        self.backends: dict[str, int] = {}
        self.world: World | None = None
        self.notes: list[str] = []  # what the simulated istiod said: its "log"
        self.generation = 0
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._last_signature: str | None = None
        #: seconds between a change and its push (istiod's debounce + distribution); tests raise it to rehearse
        #: a slow mesh, where a verdict right after an apply would see stale config
        self.push_delay = float(os.environ.get("MESHJWT_REHEARSAL_PUSH_DELAY") or 0)
        #: istiod's JWKS cache, alive across reconciles, its refresh interval read from istiod's env
        self.resolver: JwksResolver | None = None
        self._control: ControlPlane | None = None
        self._keys_generation = 0  # bumped by the resolver's background pushes
        self._substitute = substitute_jwks()  # what istiod inlines for a JWKS it cannot fetch (one key per run)
        #: nginx-proxy pods by uid: (order first seen, default.conf and jwks.json as they were when it started)
        self._nginx_pods: dict[str, tuple[int, str | None, str | None]] = {}
        self._nginx_seen = 0

    # --- lifecycle (call start/stop from the main thread: children die with their spawning thread) -----
    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = self.workdir / "files"
        files.mkdir(exist_ok=True)
        for name in ("nginx-proxy-jwks.json", "external-jwks.json"):
            (files / name).write_text('{"keys": []}')
        (files / "nginx-proxy-control.json").write_text('{"down": true}')  # no nginx-proxy pod yet
        spec = {"jwks_servers": {
            "nginx-proxy": {"routes": {NGINX_JWKS_PATH: str(files / "nginx-proxy-jwks.json")},
                            "control": str(files / "nginx-proxy-control.json")},
            "external-http": {"routes": {EXTERNAL_JWKS_PATH: str(files / "external-jwks.json")}},
            "external-https": {"routes": {EXTERNAL_JWKS_PATH: str(files / "external-jwks.json")},
                               "tls": {"cert": str(files / "tls.crt"), "key": str(files / "tls.key")}},
        }}  # fmt: skip
        self.servers = workload_servers.spawn(spec, self.workdir)
        self.envoy = Envoy(self.workdir, envoy_binary())
        self.envoy.start(timeout)
        self.backends = workload_servers.await_ports(self.servers, self.workdir, timeout)
        self._worker = threading.Thread(target=self._loop, name="dataplane", daemon=True)
        self._worker.start()
        self.changed()

    def stop(self) -> None:
        if self.resolver:
            self.resolver.stop()
        self._stopping.set()
        self._dirty.set()
        if self._worker:
            self._worker.join(timeout=5)
        if self.envoy:
            self.envoy.stop()
        if self.servers:
            processes.terminate(self.servers)
            self.servers = None

    def changed(self, *_: Any) -> None:
        """A store changed: reconcile soon (store callbacks must return at once)."""
        self._dirty.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.is_set():
                return
            time.sleep(0.02)  # let a burst of changes (one kubectl apply) land before translating
            time.sleep(self.push_delay)  # istiod's debounce and push latency, as a test asks
            self._dirty.clear()
            try:
                self.reconcile()
            except Exception as exc:  # noqa: BLE001 - istiod logs and keeps serving the last good config
                self._note(f"reconcile failed: {type(exc).__name__}: {exc}")

    # --- reconcile ------------------------------------------------------------------------------
    def _deployment(self, store: Store, app: str) -> Mapping[str, Any] | None:
        for dep in store.list("deployments.apps"):
            labels = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
            if labels.get("app") == app and not dep["metadata"].get("deletionTimestamp"):
                return dep
        return None

    def topology(self) -> tuple[Topology, dict[str, Mapping[str, str]]] | None:
        """Where the sample workloads run, read from the Deployments; None until httpbin exists."""
        found = {app: self._deployment(self.workloads, app) for app in
                 ("httpbin", "productpage", "nginx-proxy", "jwks-external", "istio-ingressgateway")}  # fmt: skip
        if not found["httpbin"]:
            return None
        ns = {app: dep["metadata"]["namespace"] for app, dep in found.items() if dep}
        labels = {name: dict(dep["spec"]["template"]["metadata"].get("labels") or {})
                  for name, dep in (("httpbin", found["httpbin"]), ("productpage", found["productpage"]),
                                    ("istio-ingressgateway", found["istio-ingressgateway"])) if dep}  # fmt: skip
        external_ns = ns.get("jwks-external", "jwks-external")
        routes: tuple[Mapping[str, Any], ...] = ()
        for vs in self.istio.list("virtualservices.networking.istio.io"):
            if vs.get("spec", {}).get("gateways"):
                routes += virtual_service_routes(vs)
        topology = Topology(
            namespace=ns["httpbin"], bookinfo_namespace=ns.get("productpage", "default"),
            root_namespace=ns.get("istio-ingressgateway", "istio-system"), external_namespace=external_ns,
            external_hosts=tuple(self._rewrites(f"jwks-external.{external_ns}.{CLUSTER_DOMAIN}")),
            gateway_routes=routes,
        )  # fmt: skip
        return topology, labels

    def _rewrites(self, target: str) -> list[str]:
        """Names CoreDNS rewrites to ``target`` (kind: the external JWKS host)."""
        corefile = ((self.workloads.get("configmaps", "kube-system", "coredns") or {}).get("data") or {}).get(
            "Corefile", "")
        return [host for host, to in REWRITE.findall(corefile) if to.rstrip(".") == target]

    def _write(self, name: str, text: str | None, mode: int = 0o600) -> str | None:
        """Write a file the servers read (atomically, only when it changed); its path, or None for no text."""
        if text is None:
            return None
        path = self.workdir / "files" / name
        if path.is_file() and path.read_text() == text:
            return str(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        return str(path)

    def _files(self, topology: Topology) -> tuple[str, dict[str, str]]:
        """Write the JWKS, TLS and CA files the workloads and istiod read; return (istiod's CA bundle,
        Secret name → CA file for DestinationRule credentialName)."""
        self._nginx_proxy(topology.namespace)
        external = self.workloads.get("configmaps", topology.external_namespace, "jwks-external-content")
        if external:
            self._write("external-jwks.json", (external.get("data") or {}).get("jwks.json", ""), 0o644)
        tls = self.workloads.get("secrets", topology.external_namespace, "jwks-external-tls")
        if tls:
            self._write("tls.crt", secret_value(tls, "tls.crt"))
            self._write("tls.key", secret_value(tls, "tls.key"))
        secrets: dict[str, str] = {}
        ca_secret = self.workloads.get("secrets", topology.namespace, EXTERNAL_JWKS_CA_SECRET)
        if ca_secret and (path := self._write("credential-ca.pem", secret_value(ca_secret, "cacert"))):
            secrets[EXTERNAL_JWKS_CA_SECRET] = path
        extra = self._istiod_extra_ca()
        return self._write("istiod-roots.pem", system_roots() + "\n" + (extra or ""), 0o644) or "", secrets

    def _configmap_value(self, namespace: str, name: str, key: str) -> str | None:
        cm = self.workloads.get("configmaps", namespace, name)
        return None if cm is None else (cm.get("data") or {}).get(key)

    def _nginx_proxy(self, namespace: str) -> None:
        """Serve what nginx-proxy serves: its newest ready pod's ConfigMaps as they were when that pod started
        (a change reaches nginx through a restart; the kubelet's later resync is not modelled), its
        ``default.conf`` read as nginx would; nothing (connections closed) while no pod is ready or nginx would
        not run that configuration."""
        pods = [p for p in self.workloads.list("pods", namespace)
                if (p["metadata"].get("labels") or {}).get("app") == "nginx-proxy"
                and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
        for pod in pods:  # kubelet mounts the ConfigMaps when the pod starts
            uid = pod["metadata"]["uid"]
            if uid not in self._nginx_pods:
                self._nginx_seen += 1
                self._nginx_pods[uid] = (self._nginx_seen,
                                         self._configmap_value(namespace, "nginx-proxy-conf", "default.conf"),
                                         self._configmap_value(namespace, "nginx-proxy-jwks", "jwks.json"))  # fmt: skip
        self._nginx_pods = {p["metadata"]["uid"]: self._nginx_pods[p["metadata"]["uid"]] for p in pods}
        ready = [self._nginx_pods[p["metadata"]["uid"]] for p in pods if pod_is_ready(p)]
        control: dict[str, Any] = {"down": True}
        if ready:
            _, conf, jwks = max(ready, key=lambda x: x[0])
            try:
                if conf is None or jwks is None:
                    raise NginxConfError("ConfigMap nginx-proxy-conf or nginx-proxy-jwks missing when the pod started")
                control = nginx.control(conf, len(jwks.encode()))
                self._write("nginx-proxy-jwks.json", jwks, 0o644)
            except NginxConfError as exc:
                self._note(f"nginx-proxy REFUSED (served as down): {exc}")
                log.error("nginx-proxy's configuration is not modelled (served as down): %s", exc)
        self._write("nginx-proxy-control.json", json.dumps(control), 0o644)

    def istiod_deployment(self) -> Mapping[str, Any] | None:
        """istiod's Deployment (its settings are read back from it, as the real istiod's come from it)."""
        return self._deployment(self.istio, "istiod")

    def istiod(self) -> Any | None:
        """istiod's settings, read back from its Deployment and ConfigMaps (None: no istiod)."""
        istiod = self.istiod_deployment()
        if istiod is None or self.istiod_settings is None:
            return None
        configmaps = self.istio.list("configmaps", istiod["metadata"]["namespace"])
        return self.istiod_settings(istiod, configmaps)

    def _istiod_extra_ca(self) -> str | None:
        return getattr(self.istiod(), "extra_root_ca", None)

    def reconcile(self) -> None:
        """Translate the Istio resources for the current topology and push them to Envoy if they changed."""
        found = self.topology()
        if found is None:
            return
        topology, labels = found
        with self._lock:
            ca_file, secrets = self._files(topology)
            world, proxies, clusters = build(topology, self.listeners, self.backends, labels)
            self.world = world
            settings = self.istiod()
            mode = settings.jwks_fetch_mode if settings is not None else "istiod"
            mode = mode if mode in JWKS_FETCH_MODES else "istiod"
            resources = [r for kind, resource in ISTIO_RESOURCES.items() for r in self.istio.list(resource)
                         if r.get("kind") == kind and not r["metadata"].get("deletionTimestamp")]  # fmt: skip
            resources = [json.loads(json.dumps({k: r[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in r}))
                         for r in resources]  # fmt: skip
            for r in resources:
                r["metadata"] = {k: v for k, v in r["metadata"].items() if k in ("name", "namespace", "annotations",
                                                                               "labels")}  # fmt: skip
            control = self._control = ControlPlane(world, proxies, clusters, ca_file, self._substitute,
                                                   secrets=secrets, resolver=self._jwks_resolver())  # fmt: skip
            signature = json.dumps([topology.__dict__, labels, resources, mode, self._files_digest(),
                                    self._keys_generation], default=str)  # fmt: skip
            if signature == self._last_signature:
                return
            try:
                translation = control.translate(resources, mode)
                assert self.envoy is not None
                self.envoy.push(translation.clusters, translation.listeners, timeout=10)
            except MeshJwtError as exc:
                self._note(f"rejected: {exc}")
                return
            self._last_signature = signature
            self.generation += 1
            self._note(f"pushed generation {self.generation}: {len(resources)} Istio resource(s), fetch mode {mode}"
                       + "".join(f"; {n}" for n in translation.notes))

    def _jwks_resolver(self) -> JwksResolver:
        """istiod's resolver, made once: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL from istiod's env (default 20m)."""
        if self.resolver is None:
            interval = (getattr(self.istiod(), "env", None) or {}).get("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL")
            try:
                seconds = parse_duration(interval, ISTIOD_REFRESH_INTERVAL)
            except MeshJwtError:
                seconds = ISTIOD_REFRESH_INTERVAL
                self._note(f"PILOT_JWT_PUB_KEY_REFRESH_INTERVAL={interval!r} not understood: using 20m")
            self.resolver = JwksResolver(self._fetch, refresh_interval=seconds, on_change=self._keys_changed)
            self.resolver.start()
        return self.resolver

    def _fetch(self, uri: str, issuer: str, timeout: float) -> Any:
        assert self._control is not None
        return self._control.fetch(uri, issuer, timeout)  # the latest world (DNS, CA) istiod sees

    def _keys_changed(self) -> None:
        self._keys_generation += 1
        self.changed()

    def _files_digest(self) -> str:
        """What the trusted and externally served files hold now, and whether nginx-proxy has a pod. What
        nginx-proxy serves is left out: a real istiod learns of it only by its JWKS refresh (the resolver's
        push), while a JWKS Service's endpoints going from none to some is a full push (a re-translation, whose
        main-flow fetch takes a jwksUri whose cache entry was deleted)."""
        digest = hashlib.sha256()
        for path in sorted((self.workdir / "files").iterdir()):
            if path.name == "nginx-proxy-jwks.json":
                continue
            if path.name == "nginx-proxy-control.json":
                down = bool(json.loads(path.read_text() or "{}").get("down"))
                digest.update(f"nginx-proxy down: {down}".encode())
                continue
            digest.update(path.name.encode() + path.read_bytes())
        return digest.hexdigest()

    def _note(self, text: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {scrub(text)}")
        del self.notes[:-500]
        log.info(text)

    # --- what pods do --------------------------------------------------------------------------
    def exec(self, namespace: str, pod: Mapping[str, Any], container: str, command: list[str],
             stdin: bytes | None) -> tuple[bytes, bytes, int]:  # fmt: skip
        """curl in the sleep container (real curl, Service names → loopback); config_dump in istio-proxy."""
        if command[:1] == ["curl"] and container != "istio-proxy":
            if self.world is None:
                return b"", b"curl: (6) Could not resolve host (no Services yet)\n", 6
            routes = connect_to(self.world)
            if stdin and command[-2:] == ["-K", "-"]:  # a batch: name resolution is per transfer in curl
                stdin = with_routes(stdin, routes)
            done = subprocess.run(["curl", *routes, *command[1:]], input=stdin or b"", capture_output=True,
                                  timeout=300)  # fmt: skip
            return done.stdout, done.stderr, done.returncode
        if command == CONFIG_DUMP and container == "istio-proxy" and self.envoy and self.envoy.admin_port:
            try:
                return json.dumps(self.config_dump(pod)).encode(), b"", 0
            except Exception as exc:  # noqa: BLE001 - the admin API's trouble, said on stderr as pilot-agent would
                return b"", f"rehearsal: config_dump failed: {type(exc).__name__}: {exc}\n".encode(), 1
        return b"", f"rehearsal: {' '.join(command)[:80]} is not simulated in container {container}\n".encode(), 126

    def config_dump(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Envoy's config_dump as this pod's proxy has it: only the listener that plays it (the local
        mesh's one Envoy plays every proxy)."""
        assert self.envoy is not None
        url = f"http://127.0.0.1:{self.envoy.admin_port}/config_dump"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback admin
            dump = json.loads(response.read())
        meta = pod.get("metadata") or {}
        app = (meta.get("labels") or {}).get("app", "")
        suffix = f"~{app}.{meta.get('namespace')}"
        for config in dump.get("configs", []):
            if "dynamic_listeners" in config:
                config["dynamic_listeners"] = [x for x in config["dynamic_listeners"]
                                               if listener_name(x).endswith(suffix)]  # fmt: skip
        return dump

    def logs(self, pod: Mapping[str, Any], container: str) -> str:
        """istiod's log: what the simulated istiod did; a proxy's: Envoy's log tail."""
        labels = pod.get("metadata", {}).get("labels") or {}
        if labels.get("app") == "istiod":
            return "\n".join(self.notes) + "\n"
        if container == "istio-proxy" and self.envoy:
            return scrub(self.envoy.log_tail(2000)) + "\n"
        return ""
