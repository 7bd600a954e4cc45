"""What the kind and cluster targets share: workloads, apply/clear, requests, diagnostics, phase timings."""

from __future__ import annotations

import copy
import http.client
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshjwt.errors import ApplyRefused, EnvironmentProblem, TargetCannot
from meshjwt.kube import istio_source, jwks_server, readiness, workloads
from meshjwt.kube.curl import CurlResult, Transfer, batch_config, parse_batch
from meshjwt.kube.kubectl import Kubectl, ResourceRef, first_line
from meshjwt.kube.plans import RUN_LABEL, exec_args
from meshjwt.localmesh.istiod import IstiodBehaviour
from meshjwt.localmesh.jwks_resolver import ISTIOD_FAILURE_INTERVAL
from meshjwt.localmesh.translate.authn import parse_duration
from meshjwt.localmesh.world import Workload
from meshjwt.mesh import Mesh, Request, Response
from meshjwt.samples import GATEWAY_LABELS, HTTPBIN_LABELS
from meshjwt.settings import Settings, TargetOptions, option
from meshjwt.targets import config_probe

#: after its refresh interval, istiod's fetch may take its default timeout before a failure is final
JWKS_FETCH_MARGIN = 5.0
#: after a rotation, the least time before istiod's next refresh that a case needs to see the old keys in force
ROTATION_WINDOW = 5.0


def log(message: str) -> None:
    print(f"meshjwt: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class KubeOptions(TargetOptions):
    """Options both cluster targets take."""

    kubectl_path: str | None = field(default=None, metadata=option(
        "--kubectl-path", "use this kubectl instead of the pinned download"))
    image_registry: str | None = field(default=None, metadata=option(
        "--image-registry", "pull workload images (and Istio's on kind, as HOST/istio) from this mirror",
        metavar="HOST[/PATH]"))
    ingress_url: str | None = field(default=None, metadata=option(
        "--ingress-url", "ingress gateway address (default: kind NodePort mapping, or the gateway Service's "
        "load-balancer address)", metavar="URL"))
    injection_label: str | None = field(default=None, metadata=option(
        "--injection-label", "label enabling sidecar injection (default istio-injection=enabled; e.g. "
        "istio.io/rev=asm-managed)", metavar="KEY=VALUE"))


class KubeMesh(Mesh):
    """Base of targets backed by a Kubernetes cluster with Istio; subclasses bring the cluster up."""

    name = "kube"
    Options = KubeOptions

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        self.settings, self.jwks_json = settings, jwks_json
        self.options: KubeOptions = self.Options.of(settings.target_options)
        self.timings: dict[str, float] = {}
        self.run_id = f"r{int(time.time()):x}"[-10:]
        self.data: Kubectl | None = None  # data-plane cluster
        self.control: Kubectl | None = None  # where Istio resources go (managed meshes: elsewhere)
        self.vars: dict[str, str] = {}
        self.fetch_mode = settings.jwks_fetch_mode
        self.ingress_url: str | None = self.options.ingress_url
        self._applied: list[tuple[ResourceRef, dict[str, Any]]] = []
        self._sleep_pod: str | None = None
        self._scenarios_started: float | None = None
        self.exec_calls = 0  # kubectl exec calls that sent requests (one per convergence round)
        self.probe_calls = 0  # kubectl exec calls that read a proxy's config (after each apply)
        self.unprobed: set[str] = set()  # namespace/deployment whose proxy config this run may not read
        #: istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL in seconds, read from its Deployment (None: not visible)
        self.jwks_refresh_interval: float | None = None
        self._served = (jwks_server.Answer(), jwks_json)  # what nginx-proxy serves: (answer, keys)
        self._jwks_down_since: float | None = None  # when nginx-proxy was scaled to 0 (None: it is up)
        self._applied_at = time.monotonic()  # when the last apply returned (istiod's main-flow fetches were done)
        self._pushes = 0  # unrelated pushes made (their ServiceEntries' names)
        #: when istiod's background job gave up on the nginx-proxy rules' entry (deleted: no refresh shows it)
        self._entry_dropped_at: float | None = None

    # --- phases ---------------------------------------------------------------------------
    def phase(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)
        log(f"phase {name}: {self.timings[name]:.1f}s")

    def report_timings(self) -> None:
        if self._scenarios_started is not None and "scenarios" not in self.timings:
            self.phase("scenarios", self._scenarios_started)
        if self.timings:
            log("phase timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        if self.exec_calls or self.probe_calls:
            log(f"kubectl exec calls: {self.exec_calls} sending requests, {self.probe_calls} reading proxy config")

    # --- workloads --------------------------------------------------------------------------
    def workload_variables(self) -> dict[str, str]:
        return {
            **self.vars,
            "INJECTION_LABEL_KEY": self.injection_label[0],
            "INJECTION_LABEL_VALUE": self.injection_label[1],
        }

    @property
    def injection_label(self) -> tuple[str, str]:
        key, _, value = (self.options.injection_label or "istio-injection=enabled").partition("=")
        return key, value

    def deploy_workloads(self, tls: tuple[str, str, str] | None) -> None:
        """Apply the workloads, nginx-proxy first and ready before anything else; wait for all.

        ``tls`` is the external JWKS endpoint's (cert, key, CA cert) PEMs."""
        assert self.data is not None
        started = time.monotonic()
        variables = self.workload_variables()
        docs = workloads.load(variables, image_registry=self.options.image_registry)
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {})[RUN_LABEL] = self.run_id
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        istio = [d for d in docs if d["apiVersion"].startswith("networking.istio.io/")]
        rest = [d for d in docs if d not in namespaces and d not in istio]
        self.data.apply(namespaces)
        if self.control is not None and self.control is not self.data:  # Gateway/VirtualService go there
            self.control.apply(namespaces)
        extra = workloads.jwks_configmaps(
            self.jwks_json, self.vars["NAMESPACE"], self.vars["EXTERNAL_NAMESPACE"]
        )
        if tls:
            cert, key, ca_cert = tls
            extra.append(workloads.tls_secret(self.vars["EXTERNAL_NAMESPACE"], cert, key))
            extra.append(workloads.ca_secret(self.vars["NAMESPACE"], ca_cert))
        self.data.apply(extra + rest, timeout=self.settings.timeouts.start)
        (self.control or self.data).apply(istio)
        deadline = time.monotonic() + self.settings.timeouts.deploy
        for ns_var, deployment, proxy in workloads.DEPLOYMENTS:
            left = max(deadline - time.monotonic(), self.settings.timeouts.ready_poll)
            self.wait_deployment(self.vars[ns_var], deployment, proxy=proxy, timeout=left, name="deploy")
        self.phase("deploy", started)
        self._scenarios_started = time.monotonic()

    def wait_deployment(
        self, namespace: str, deployment: str, *, proxy: readiness.ProxyKind, timeout: float, name: str
    ) -> None:
        """Rollout complete and every pod of it ready, with the Istio proxy ``proxy`` says, within the
        named timeout ``name`` (``timeout`` seconds left of it)."""
        assert self.data is not None
        data = self.data

        def check() -> readiness.Check:
            return readiness.deployment_ready(data.json, namespace, deployment, proxy)

        readiness.wait_for(check, timeout=timeout, what=f"{namespace}/{deployment} (timeout '{name}')",
                           interval=self.settings.timeouts.ready_poll)  # fmt: skip

    # --- Mesh interface -------------------------------------------------------------------
    def variables(self) -> Mapping[str, str]:
        return {k: v for k, v in self.vars.items() if k != "EXTERNAL_NAMESPACE"} | {"JWKS": self.jwks_json}

    def apply(self, resources: Sequence[Mapping[str, Any]], *, jwks_fetch_mode: str | None = None) -> None:
        if jwks_fetch_mode and jwks_fetch_mode != self.fetch_mode:
            raise TargetCannot(
                f"scenario needs PILOT_JWT_ENABLE_REMOTE_JWKS={jwks_fetch_mode}, istiod runs in"
                f" {self.fetch_mode} mode"
            )
        target = self.control or self.data
        assert target is not None
        wanted: list[tuple[ResourceRef, dict[str, Any]]] = []
        for resource in resources:
            doc = copy.deepcopy(dict(resource))
            doc.setdefault("metadata", {}).setdefault("labels", {})[RUN_LABEL] = self.run_id
            doc["metadata"].setdefault("namespace", self.vars["NAMESPACE"])
            wanted.append((ResourceRef.of(doc), doc))
        keep = {ref for ref, _ in wanted}
        previous = [doc for _, doc in self._applied]
        for ref, _ in self._applied:
            if ref not in keep:
                target.delete(ref, timeout=self.settings.timeouts.apply)
        self._applied = [item for item in self._applied if item[0] in keep]
        try:
            target.apply([doc for _, doc in wanted], timeout=self.settings.timeouts.apply)
        except EnvironmentProblem as exc:
            if "denied the request" in str(exc):  # Istio's validation webhook: a scenario may expect it
                raise ApplyRefused(str(exc)) from None
            raise
        self._applied = wanted
        self.await_proxies([doc for _, doc in wanted], previous)
        self._applied_at = time.monotonic()  # istiod's main-flow fetches of these rules were done by now
        self._entry_dropped_at = None

    def clear(self) -> None:
        """Delete what the run applied and wait until the proxies run without it: the next scenario starts
        from a mesh with none of this one's policies (nor their proxies' JWKS caches)."""
        target = self.control or self.data
        if target is None:
            return
        previous = [doc for _, doc in self._applied]
        for ref, _ in reversed(self._applied):
            target.delete(ref, timeout=self.settings.timeouts.apply)
        self._applied = []
        if self.data is not None and previous:
            self.await_proxies([], previous)

    def proxies(self) -> list[tuple[Workload, str, str]]:
        """The proxies scenarios configure: (workload as istiod selects it, namespace, deployment)."""
        ns, root = self.vars["NAMESPACE"], self.vars["ROOT_NAMESPACE"]
        gateway = Workload("istio-ingressgateway", root, dict(GATEWAY_LABELS))
        return [(Workload("httpbin", ns, dict(HTTPBIN_LABELS)), ns, "httpbin"),
                (gateway, root, "istio-ingressgateway")]  # fmt: skip

    def await_proxies(
        self, resources: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]]
    ) -> None:
        """Wait (timeout 'apply') until every proxy that ``resources`` or ``previous`` select runs exactly
        ``resources``: no verdict is ever taken on stale config."""
        assert self.data is not None
        root, data = self.vars["ROOT_NAMESPACE"], self.data
        for workload, namespace, deployment in self.proxies():
            if f"{namespace}/{deployment}" in self.unprobed:
                continue  # no permission to read its config: convergence polling alone guards its cases
            want = config_probe.expected(resources, workload, root)
            if want == config_probe.expected(previous, workload, root) == config_probe.Fingerprint.NONE:
                continue  # nothing selected it before or now

            def check(
                want: config_probe.Fingerprint = want, ns: str = namespace, dep: str = deployment
            ) -> readiness.Check:
                dump = ["exec", "-n", ns, f"deploy/{dep}", "-c", "istio-proxy", "--", *config_probe.CONFIG_DUMP]
                done = data.run(dump, timeout=30, check=False)
                self.probe_calls += 1
                if done.returncode != 0:
                    return False, f"config_dump of {ns}/{dep} failed: {first_line(done.stderr)}"
                problems = want.differences(config_probe.running(done.stdout))
                if problems and want.providers and not want.differences(config_probe.refused(done.stdout)):
                    return True, f"{ns}/{dep}: refused this configuration, keeps its previous one"
                return not problems, f"{ns}/{dep}: {', '.join(problems[:4]) or 'up to date'}"

            readiness.wait_for(check, timeout=self.settings.timeouts.apply,
                               what=f"config of {namespace}/{deployment} (timeout 'apply')",
                               interval=self.settings.timeouts.poll_interval)  # fmt: skip

    def use_path_normalization(self, mode: str | None) -> None:
        """The mesh's meshConfig is set at install (kind: ``--path-normalization``; cluster: the operator's, taken
        as Istio's default BASE unless given): a scenario needing another mode is unsupported, never run on the
        wrong one."""
        running = self.settings.path_normalization or "BASE"
        if mode is not None and mode != running:
            raise TargetCannot(f"the {self.name} target runs meshConfig pathNormalization {running} and does not "
                               f"switch it within a run; run with --path-normalization {mode} for this scenario")

    def confirms_config(self, client: str) -> bool:
        """Yes where :meth:`await_proxies` read the answering proxy's config_dump (no for an unprobed one)."""
        ns, root = self.vars["NAMESPACE"], self.vars["ROOT_NAMESPACE"]
        proxy = f"{root}/istio-ingressgateway" if client == "ingress" else f"{ns}/httpbin"
        return proxy not in self.unprobed

    def request(self, request: Request) -> Response:
        return self.request_many([request])[0]

    def sleep_pod(self) -> str:
        assert self.data is not None
        if self._sleep_pod is None:
            items = self.data.json(["get", "pods", "-n", self.vars["NAMESPACE"], "-l", "app=sleep"]).get(
                "items", []
            )
            running = [p["metadata"]["name"] for p in items if readiness.pod_ready(p, proxy="sidecar")[0]]
            if not running:
                raise EnvironmentProblem(f"no ready sleep pod in namespace {self.vars['NAMESPACE']}")
            self._sleep_pod = running[0]
        return self._sleep_pod

    def request_many(self, requests: Sequence[Request]) -> list[Response]:
        """Mesh requests go out together in one ``kubectl exec`` (curl reading its config from stdin);
        ingress requests go straight to the gateway."""
        answers: dict[int, Response] = {}
        mesh = [(i, r) for i, r in enumerate(requests) if r.client != "ingress"]
        if mesh:
            answers.update(zip((i for i, _ in mesh), self.mesh_requests([r for _, r in mesh]), strict=True))
        for index, request in enumerate(requests):
            if request.client == "ingress":
                answers[index] = self.ingress_request(request)
        return [answers[i] for i in range(len(requests))]

    def mesh_requests(self, requests: Sequence[Request]) -> list[Response]:
        """curl from the sleep pod (kubectl exec -i, no TTY, container ``sleep``), paths sent verbatim."""
        assert self.data is not None
        timeout = self.settings.timeouts.request
        default_host = f"httpbin.{self.vars['NAMESPACE']}:8000"
        transfers = [Transfer(f"http://{r.host or default_host}{r.path}", r.method, r.headers, r.extra_headers)
                     for r in requests]  # fmt: skip
        nonce = secrets.token_hex(8)
        config = batch_config(transfers, timeout=timeout, nonce=nonce)
        args = exec_args(self.data.base, self.vars["NAMESPACE"], self.sleep_pod(), "sleep", ["curl", "-sS", "-K", "-"],
                         stdin=True)
        budget = timeout * len(requests) + 15
        self.exec_calls += 1
        try:
            done = subprocess.run(args, input=config, capture_output=True, text=True, timeout=budget, errors="replace")
        except subprocess.TimeoutExpired:
            return [Response(0, error=f"kubectl exec timed out after {budget:g}s")] * len(requests)
        if "__MESHJWT_CURL__" not in done.stdout and done.returncode != 0:
            self._sleep_pod = None  # the pod may be gone; look it up again next time
            error = f"kubectl exec failed (exit {done.returncode}): {first_line(done.stderr)}"
            return [Response(0, error=error)] * len(requests)
        return parse_batch(CurlResult(done.stdout, done.stderr, done.returncode), nonce, len(requests))

    def ingress_request(self, request: Request) -> Response:
        """HTTP to the gateway with http.client, which sends the path verbatim (no dot-segment removal)."""
        if not self.ingress_url:
            raise EnvironmentProblem("no ingress address known: pass --ingress-url")
        url = urllib.parse.urlsplit(self.ingress_url)
        conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(url.hostname or "127.0.0.1", url.port, timeout=self.settings.timeouts.request)
        try:
            conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
            headers = {k.lower(): v for k, v in request.headers.items()}
            host = request.host or headers.pop("host", None) or url.netloc
            headers.pop("host", None)
            conn.putheader("Host", host)
            for name, value in [*headers.items(), *request.extra_headers]:
                conn.putheader(name, value)
            conn.endheaders()
            answer = conn.getresponse()
            body = answer.read().decode("utf-8", "replace")
            merged: dict[str, str] = {}
            for name, value in answer.getheaders():
                key = name.lower()
                merged[key] = f"{merged[key]}, {value}" if key in merged else value
            return Response(answer.status, headers=merged, body=body)
        except (OSError, http.client.HTTPException) as exc:
            return Response(0, error=f"connection to {self.ingress_url} failed: {exc}")
        finally:
            conn.close()

    # --- JWKS lifecycle: the real nginx-proxy Deployment and its ConfigMaps; istiod's refresh ------------
    def _serve(self, answer: jwks_server.Answer, jwks_json: str) -> None:
        """Make nginx-proxy serve ``answer`` with these keys now: update its ConfigMaps, then roll it out anew.

        A rollout (the served configuration's hash on the pod template), not a wait for the kubelet: a mounted
        ConfigMap is resynced only after the kubelet's sync period plus its cache TTL (about 60-90 s, nothing the
        suite can observe), and nginx reads its configuration only at start. New pods mount the ConfigMaps as
        they are, and the rollout (old pods gone, new ones ready, timeout 'jwks_server') says when every answer
        comes from them. While scaled to 0, the template changes too and the next pod mounts them."""
        if (answer, jwks_json) == self._served:
            return
        assert self.data is not None
        ns, timeout = self.vars["NAMESPACE"], self.settings.timeouts.apply
        self.data.apply(jwks_server.configmaps(ns, answer, jwks_json), timeout=timeout)
        self.data.run([*jwks_server.restart_patch(answer, jwks_json), "-n", ns], timeout=timeout)
        self._served = (answer, jwks_json)
        if self._jwks_down_since is None:
            self._await_jwks_server()

    def _await_jwks_server(self) -> None:
        self.wait_deployment(self.vars["NAMESPACE"], jwks_server.DEPLOYMENT, proxy="sidecar",
                             timeout=self.settings.timeouts.jwks_server, name="jwks_server")  # fmt: skip

    def _scale_jwks_server(self, replicas: int) -> None:
        assert self.data is not None
        ns = self.vars["NAMESPACE"]
        self.data.run([*jwks_server.replicas_patch(replicas), "-n", ns], timeout=self.settings.timeouts.apply)
        if replicas:
            self._await_jwks_server()
            self._jwks_down_since = None
            return
        data = self.data

        def gone() -> readiness.Check:
            pods = data.json(["get", "pods", "-n", ns, "-l", f"app={jwks_server.DEPLOYMENT}"]).get("items", [])
            return not pods, f"{len(pods)} pod(s) of {ns}/{jwks_server.DEPLOYMENT} left"

        readiness.wait_for(gone, timeout=self.settings.timeouts.jwks_server,
                           what=f"{ns}/{jwks_server.DEPLOYMENT} scaled to 0 (timeout 'jwks_server')",
                           interval=self.settings.timeouts.ready_poll)  # fmt: skip
        self._jwks_down_since = time.monotonic()

    def rotate_jwks(self, jwks_json: str) -> None:
        """Serve ``jwks_json``, just after one of istiod's refreshes, so that the next one is a whole interval
        away and a case sees the old keys in force first. A refresh that changes nothing shows nowhere, so the
        current keys are served first with a marker field (same keys) until the proxies inline it."""
        interval = self._refresh_interval()  # refuse before changing anything
        answer, keys = self._served
        self._serve(answer, jwks_server.marked(keys, secrets.token_hex(6)))
        self.await_jwks_refresh()
        refreshed = time.monotonic()
        self._serve(answer, jwks_json)
        left = interval - (time.monotonic() - refreshed)
        if left < ROTATION_WINDOW:  # the next refresh may come before a case sees the old keys in force
            raise EnvironmentProblem(f"nginx-proxy's rollout took {interval - left:.1f}s of istiod's {interval:g}s "
                                     f"JWKS refresh interval: under {ROTATION_WINDOW:g}s were left for a case to see "
                                     "the old keys in force (a longer PILOT_JWT_PUB_KEY_REFRESH_INTERVAL gives more)")

    def jwks_server_down(self) -> None:
        """Scale nginx-proxy to 0 and wait until its pods are gone (timeout 'jwks_server')."""
        if self._jwks_down_since is None:
            self._scale_jwks_server(0)

    def jwks_server_up(self) -> None:
        """Bring nginx-proxy back: answering its keys again if it was failing (a rollout), scaled back to 1 if it
        was down; wait until it is ready (timeout 'jwks_server')."""
        if self._served[0].status >= 400:
            self._serve(jwks_server.Answer(), self._served[1])
        if self._jwks_down_since is not None:
            self._scale_jwks_server(1)

    def fake_jwks_signing_key(self) -> Any:
        """Istio's own leaked FakeJwks key, read from Istio's source at a pinned commit (sha256-checked, cached,
        never shipped); TargetCannot offline or without a verified pin (meshjwt.kube.istio_source)."""
        return istio_source.leaked_fake_jwks_key(timeout=self.settings.timeouts.apply)

    def jwks_server_failing(self) -> None:
        """Make nginx-proxy answer 503 (a rollout; the Service keeps endpoints, so istiod makes no full push)."""
        self._serve(jwks_server.Answer(body="unavailable", status=503), self._served[1])

    def await_jwks_retry_window(self) -> None:
        """Wait until istiod's background retries of a failed main-flow fetch are over: they share one deadline,
        the rule's timeout (istio/istio pilot/pkg/model/jwks_resolver.go, refresh via jwksuriChannel), counted
        from the failed fetch, which was done when the last apply returned; plus JWKS_FETCH_MARGIN."""
        timeouts = [parse_duration(rule.get("timeout")) for _, doc in self._applied
                    if doc.get("kind") == "RequestAuthentication"
                    for rule in (doc.get("spec") or {}).get("jwtRules") or []]  # fmt: skip
        due = self._applied_at + max(timeouts, default=5.0) + JWKS_FETCH_MARGIN

        def waited() -> readiness.Check:
            left = due - time.monotonic()
            return left <= 0, f"istiod's background JWKS retries over within {max(left, 0):.1f}s"

        readiness.wait_for(waited, timeout=self.settings.timeouts.jwks_refresh, interval=self.settings.timeouts.
                           poll_interval, what="the end of istiod's background JWKS retries")  # fmt: skip
        if self._jwks_down_since is not None or self._served[0].status >= 400:
            self._entry_dropped_at = due  # the job failed: the entry is deleted (before 1.23 the ticker set to 1 min)

    def unrelated_push(self) -> None:
        """Make istiod push for a change that concerns no applied rule: a ServiceEntry for a host nobody calls,
        created and deleted (each is a full push: every proxy's config is translated again)."""
        target = self.control or self.data
        assert target is not None
        self._pushes += 1
        entry = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                 "metadata": {"name": f"meshjwt-push-{self._pushes}", "namespace": self.vars["NAMESPACE"],
                              "labels": {RUN_LABEL: self.run_id}},
                 "spec": {"hosts": [f"push-{self._pushes}.meshjwt.invalid"], "location": "MESH_EXTERNAL",
                          "resolution": "NONE", "ports": [{"number": 9, "name": "tcp-discard", "protocol": "TCP"}]}}
        target.apply([entry], timeout=self.settings.timeouts.apply)
        target.delete(ResourceRef.of(entry), timeout=self.settings.timeouts.apply)
        self._entry_dropped_at = None

    def slow_jwks_server(self, seconds: float) -> None:
        """Throttle the keys with nginx's ``limit_rate`` so that a fetch takes at least ``seconds`` (stock nginx
        has no delay directive; a throttled body is a slow server to any client)."""
        answer, keys = self._served
        self._serve(jwks_server.Answer(rate=jwks_server.slow_rate(len(keys.encode()), seconds)), keys)

    def serve_jwks_body(self, body: str) -> None:
        try:
            answer = jwks_server.Answer(body=body)
            jwks_server.conf(answer)
        except ValueError as exc:
            raise TargetCannot(f"nginx-proxy cannot answer this body: {exc}") from None
        self._serve(answer, self._served[1])

    def redirect_jwks(self) -> None:
        self._serve(jwks_server.Answer(redirect=True), self._served[1])

    def restore_jwks_server(self) -> None:
        """The manifest's nginx configuration, the run's keys, one replica ready."""
        if self.data is None:
            return
        default = (jwks_server.Answer(), self.jwks_json)
        if self._jwks_down_since is not None:
            self._serve(*default)
            self._scale_jwks_server(1)
        else:
            self._serve(*default)

    def _refresh_interval(self) -> float:
        """istiod's refresh interval, if the suite knows it and may wait that long (else TargetCannot)."""
        interval = self.jwks_refresh_interval
        if interval is None:
            raise TargetCannot("istiod is not visible, so its JWKS refresh interval (PILOT_JWT_PUB_KEY_REFRESH_"
                               "INTERVAL) is unknown and no wait for its next refresh can be bounded")  # fmt: skip
        limit = self.settings.timeouts.jwks_refresh
        if interval + JWKS_FETCH_MARGIN > limit:
            raise TargetCannot(f"istiod refreshes its JWKS every {interval:g}s (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL), "
                               f"more than timeout 'jwks_refresh' ({limit:g}s) allows: raise --timeout-jwks-refresh "
                               "to wait for it")  # fmt: skip
        return interval

    def await_jwks_refresh(self) -> None:
        """Return once istiod's next periodic refresh reached the proxies (timeout 'jwks_refresh').

        While nginx-proxy serves its keys, that is when every affected proxy inlines exactly what it serves. A
        refresh that fails (server down, slow, not a JWKS) changes nothing a proxy shows: then the wait lasts
        until one refresh interval (plus istiod's fetch timeout) has passed since the change."""
        interval = self._refresh_interval()
        if self.fetch_mode != "istiod":
            raise TargetCannot(f"istiod runs in {self.fetch_mode} mode: the proxies fetch nginx-proxy's JWKS "
                               "themselves, istiod's refresh does not reach them")  # fmt: skip
        answer, keys = self._served
        limit = self.settings.timeouts.jwks_refresh
        dropped = self._entry_dropped_at
        if dropped is not None or self._jwks_down_since is not None or answer.body is not None \
                or answer.rate is not None or not self._nginx_issuers():  # nothing a proxy shows: wait its time
            since = self._jwks_down_since or time.monotonic()
            due = since + interval + JWKS_FETCH_MARGIN
            if dropped is not None and IstiodBehaviour.for_version(self.info().version).background_sets_interval:
                # before 1.23 the failed background job ran through refreshCache: the ticker was set to 1 min
                due = max(due, dropped + ISTIOD_FAILURE_INTERVAL + JWKS_FETCH_MARGIN)

            def waited() -> readiness.Check:
                left = due - time.monotonic()
                return left <= 0, f"istiod's refresh due within {max(left, 0):.1f}s"

            readiness.wait_for(waited, timeout=limit, what="istiod's JWKS refresh (timeout 'jwks_refresh')",
                               interval=self.settings.timeouts.poll_interval)  # fmt: skip
            return
        self._await_inline_jwks(keys, limit)

    def _nginx_issuers(self) -> set[str]:
        """Issuers of the applied jwtRules whose jwksUri is nginx-proxy's."""
        host = f"{jwks_server.DEPLOYMENT}.{self.vars['NAMESPACE']}"
        issuers: set[str] = set()
        for _, doc in self._applied:
            if doc.get("kind") == "RequestAuthentication":
                for rule in (doc.get("spec") or {}).get("jwtRules") or []:
                    netloc = urllib.parse.urlsplit(str(rule.get("jwksUri", ""))).hostname or ""
                    if netloc == jwks_server.DEPLOYMENT or netloc.startswith(host):
                        issuers.add(str(rule.get("issuer", "")))
        return issuers

    def _await_inline_jwks(self, served: str, timeout: float) -> None:
        """Poll the config_dump of every proxy an nginx-proxy jwtRule selects until it inlines ``served``."""
        assert self.data is not None
        issuers, root, data = self._nginx_issuers(), self.vars["ROOT_NAMESPACE"], self.data
        if not issuers:
            raise TargetCannot("no applied RequestAuthentication takes its keys from nginx-proxy")
        resources = [doc for _, doc in self._applied]
        for workload, namespace, deployment in self.proxies():
            if f"{namespace}/{deployment}" in self.unprobed or not config_probe.expected(resources, workload,
                                                                                          root).providers:
                continue

            def check(ns: str = namespace, dep: str = deployment) -> readiness.Check:
                dump = ["exec", "-n", ns, f"deploy/{dep}", "-c", "istio-proxy", "--", *config_probe.CONFIG_DUMP]
                done = data.run(dump, timeout=30, check=False)
                self.probe_calls += 1
                if done.returncode != 0:
                    return False, f"config_dump of {ns}/{dep} failed: {first_line(done.stderr)}"
                inlined = jwks_server.inline_jwks(done.stdout, issuers)
                fresh = [jwks_server.same_jwks(x, served) for x in inlined]
                return bool(fresh) and all(fresh), f"{ns}/{dep}: {sum(fresh)}/{len(fresh)} provider(s) inline it"

            readiness.wait_for(check, timeout=timeout, what=f"istiod's JWKS refresh on {namespace}/{deployment} "
                               "(timeout 'jwks_refresh')", interval=self.settings.timeouts.poll_interval)  # fmt: skip

    # --- diagnostics ------------------------------------------------------------------------
    def artifacts(self, directory: str) -> list[str]:
        from meshjwt.kube.diagnostics import collect

        if self.data is None:
            return []
        applied = yaml.safe_dump_all([doc for _, doc in self._applied], sort_keys=False)
        namespaces = [
            self.vars[k] for k in ("NAMESPACE", "BOOKINFO_NAMESPACE", "EXTERNAL_NAMESPACE") if k in self.vars
        ]
        return collect(
            Path(directory),
            self.data,
            self.control,
            applied,
            namespaces,
            self.vars.get("ROOT_NAMESPACE", "istio-system"),
            self.vars.get("NAMESPACE", ""),
            self.vars.get("BOOKINFO_NAMESPACE", ""),
        )
