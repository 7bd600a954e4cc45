"""What the kind and cluster targets share: workloads, apply/clear, requests, diagnostics, phase timings."""

from __future__ import annotations

import copy
import http.client
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from meshjwt.errors import EnvironmentProblem, TargetCannot
from meshjwt.kube import readiness, workloads
from meshjwt.kube.curl import CurlResult, parse
from meshjwt.kube.kubectl import Kubectl, ResourceRef, first_line
from meshjwt.kube.plans import RUN_LABEL, curl_args, exec_args
from meshjwt.settings import Settings
from meshjwt.targets.base import Mesh, Request, Response


def log(message: str) -> None:
    print(f"meshjwt: {message}", file=sys.stderr, flush=True)


class KubeMesh(Mesh):
    """Base of targets backed by a Kubernetes cluster with Istio; subclasses bring the cluster up."""

    name = "kube"

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        self.settings, self.jwks_json = settings, jwks_json
        self.extra: Mapping[str, Any] = settings.extra or {}
        self.timings: dict[str, float] = {}
        self.run_id = f"r{int(time.time()):x}"[-10:]
        self.data: Kubectl | None = None  # data-plane cluster
        self.control: Kubectl | None = None  # where Istio resources go (managed meshes: elsewhere)
        self.vars: dict[str, str] = {}
        self.fetch_mode = settings.jwks_fetch_mode
        self.ingress_url: str | None = self.extra.get("ingress_url")
        self._applied: list[tuple[ResourceRef, dict[str, Any]]] = []
        self._sleep_pod: str | None = None
        self._scenarios_started: float | None = None

    # --- phases ---------------------------------------------------------------------------
    def phase(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)
        log(f"phase {name}: {self.timings[name]:.1f}s")

    def report_timings(self) -> None:
        if self._scenarios_started is not None and "scenarios" not in self.timings:
            self.phase("scenarios", self._scenarios_started)
        if self.timings:
            log("phase timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))

    # --- workloads --------------------------------------------------------------------------
    def workload_variables(self) -> dict[str, str]:
        return {
            **self.vars,
            "INJECTION_LABEL_KEY": self.injection_label[0],
            "INJECTION_LABEL_VALUE": self.injection_label[1],
        }

    @property
    def injection_label(self) -> tuple[str, str]:
        key, _, value = str(self.extra.get("injection_label") or "istio-injection=enabled").partition("=")
        return key, value

    def deploy_workloads(self, tls: tuple[str, str, str] | None) -> None:
        """Apply the workloads, nginx-proxy first and ready before anything else; wait for all.

        ``tls`` is the external JWKS endpoint's (cert, key, CA cert) PEMs."""
        assert self.data is not None
        started = time.monotonic()
        variables = self.workload_variables()
        docs = workloads.load(variables, image_registry=self.extra.get("image_registry"))
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {})[RUN_LABEL] = self.run_id
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        istio = [d for d in docs if d["apiVersion"].startswith("networking.istio.io/")]
        rest = [d for d in docs if d not in namespaces and d not in istio]
        self.data.apply(namespaces)
        extra = workloads.jwks_configmaps(
            self.jwks_json, self.vars["NAMESPACE"], self.vars["EXTERNAL_NAMESPACE"]
        )
        if tls:
            cert, key, ca_cert = tls
            extra.append(workloads.tls_secret(self.vars["EXTERNAL_NAMESPACE"], cert, key))
            extra.append(workloads.ca_secret(self.vars["NAMESPACE"], ca_cert))
        self.data.apply(extra + rest, timeout=self.settings.timeouts.start)
        (self.control or self.data).apply(istio)
        budget = max(self.settings.timeouts.start * 5, 300.0)
        for ns_var, deployment, injected in workloads.DEPLOYMENTS:
            self.wait_deployment(self.vars[ns_var], deployment, injected=injected, timeout=budget)
        self.phase("deploy", started)
        self._scenarios_started = time.monotonic()

    def wait_deployment(self, namespace: str, name: str, *, injected: bool, timeout: float) -> None:
        """Rollout complete and every pod of it ready (2/2 when injected)."""
        assert self.data is not None
        data = self.data

        def check() -> readiness.Check:
            dep = data.json(["get", "deployment", name, "-n", namespace])
            ok, reason = readiness.deployment_rolled_out(dep)
            if not ok:
                return ok, reason
            selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
            pods = data.json(["get", "pods", "-n", namespace, "-l", selector]).get("items", [])
            return readiness.pods_ready(pods, injected=injected, app=name)

        readiness.wait_for(check, timeout=timeout, what=f"{namespace}/{name}", interval=2.0)

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
        for ref, _ in self._applied:
            if ref not in keep:
                target.delete(ref, timeout=self.settings.timeouts.apply)
        self._applied = [item for item in self._applied if item[0] in keep]
        target.apply([doc for _, doc in wanted], timeout=self.settings.timeouts.apply)
        self._applied = wanted

    def clear(self) -> None:
        target = self.control or self.data
        if target is None:
            return
        for ref, _ in reversed(self._applied):
            target.delete(ref, timeout=self.settings.timeouts.apply)
        self._applied = []

    def request(self, request: Request) -> Response:
        if request.client == "ingress":
            return self.ingress_request(request)
        return self.mesh_request(request)

    def sleep_pod(self) -> str:
        assert self.data is not None
        if self._sleep_pod is None:
            items = self.data.json(["get", "pods", "-n", self.vars["NAMESPACE"], "-l", "app=sleep"]).get(
                "items", []
            )
            running = [p["metadata"]["name"] for p in items if readiness.pod_ready(p, injected=True)[0]]
            if not running:
                raise EnvironmentProblem(f"no ready sleep pod in namespace {self.vars['NAMESPACE']}")
            self._sleep_pod = running[0]
        return self._sleep_pod

    def mesh_request(self, request: Request) -> Response:
        """curl from the sleep pod (kubectl exec, no TTY, container ``sleep``), path sent verbatim."""
        assert self.data is not None
        host = request.host or f"httpbin.{self.vars['NAMESPACE']}:8000"
        timeout = self.settings.timeouts.request
        command = curl_args(
            f"http://{host}{request.path}", method=request.method, headers=request.headers, timeout=timeout,
            extra_headers=request.extra_headers,
        )
        args = exec_args(self.data.base, self.vars["NAMESPACE"], self.sleep_pod(), "sleep", command)
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout + 15, errors="replace"
            )
        except subprocess.TimeoutExpired:
            return Response(0, error=f"kubectl exec timed out after {timeout + 15:g}s")
        if "__MESHJWT_CURL__" not in done.stdout and done.returncode != 0:
            self._sleep_pod = None  # the pod may be gone; look it up again next time
            return Response(
                0, error=f"kubectl exec failed (exit {done.returncode}): {first_line(done.stderr)}"
            )
        return parse(CurlResult(done.stdout, done.stderr, done.returncode))

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
