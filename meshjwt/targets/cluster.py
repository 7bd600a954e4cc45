"""``--target cluster``: an existing cluster with Istio (or a managed mesh); this run's namespaces only."""

from __future__ import annotations

import secrets
import shutil
import time

from meshjwt import pki
from meshjwt.errors import ConfigError, EnvironmentProblem
from meshjwt.kube import binaries, plans
from meshjwt.kube.kubectl import Kubectl, first_line
from meshjwt.kube.mesh import KubeMesh, log
from meshjwt.kube.versions import KUBECTL_VERSION
from meshjwt.settings import Settings
from meshjwt.targets.base import MeshInfo

#: (verb, resource, on control plane?) this run needs; checked with ``kubectl auth can-i``.
REQUIRED_ACCESS = (
    ("create", "namespaces", False),
    ("delete", "namespaces", False),
    ("create", "deployments.apps", False),
    ("create", "configmaps", False),
    ("create", "secrets", False),
    ("create", "pods/exec", False),
    ("create", "requestauthentications.security.istio.io", True),
    ("delete", "requestauthentications.security.istio.io", True),
    ("create", "authorizationpolicies.security.istio.io", True),
    ("create", "serviceentries.networking.istio.io", True),
    ("create", "destinationrules.networking.istio.io", True),
    ("create", "gateways.networking.istio.io", True),
    ("create", "virtualservices.networking.istio.io", True),
)
ISTIO_CRDS = (
    "requestauthentications.security.istio.io",
    "authorizationpolicies.security.istio.io",
    "serviceentries.networking.istio.io",
    "destinationrules.networking.istio.io",
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
)


def namespace_names(prefix: str) -> dict[str, str]:
    """This run's namespaces, all under one prefix (≤ 63 characters each)."""
    names = {
        "NAMESPACE": f"{prefix}-foo",
        "BOOKINFO_NAMESPACE": f"{prefix}-bookinfo",
        "EXTERNAL_NAMESPACE": f"{prefix}-jwks",
    }
    for name in names.values():
        if len(name) > 63 or not name.replace("-", "").isalnum() or name != name.lower():
            raise ConfigError(f"--namespace-prefix {prefix!r} gives an invalid namespace name {name!r}")
    return names


class ClusterMesh(KubeMesh):
    """Connects with --kubeconfig/--context; deletes only the namespaces it created (unless kept)."""

    name = "cluster"

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        super().__init__(settings, jwks_json)
        self.prefix = self.extra.get("namespace_prefix") or f"mjwt-{secrets.token_hex(3)}"
        root = self.extra.get("root_namespace") or "istio-system"
        self.vars = {**namespace_names(self.prefix), "ROOT_NAMESPACE": root}
        self.vars["EXTERNAL_JWKS_HOST"] = f"jwks-external.{self.vars['EXTERNAL_NAMESPACE']}.svc.cluster.local"
        self.created_namespaces: list[str] = []
        self.failed = False
        self.version = settings.version

    def _kubectl_binary(self) -> str:
        given = self.extra.get("kubectl_path")
        if given or not shutil.which("kubectl"):
            return str(binaries.resolve("kubectl", KUBECTL_VERSION, given))
        return str(shutil.which("kubectl"))

    def preflight(self) -> None:
        """Reachable, Istio CRDs present, enough RBAC; each failure is one line, within seconds."""
        assert self.data is not None and self.control is not None
        for label, kubectl in (("cluster", self.data), ("control plane", self.control)):
            done = kubectl.run(["version", "-o", "json", "--request-timeout=5s"], timeout=10, check=False)
            if done.returncode != 0 or '"serverVersion"' not in done.stdout:
                where = kubectl.context or kubectl.kubeconfig or "current context"
                raise EnvironmentProblem(f"cannot reach the {label} ({where}): {first_line(done.stderr)}")
        crds = self.control.run(
            ["get", "crd", *ISTIO_CRDS, "-o", "name", "--request-timeout=5s"], timeout=10, check=False
        )
        if crds.returncode != 0:
            raise EnvironmentProblem(f"Istio CRDs missing on the control plane: {first_line(crds.stderr)}")
        missing = []
        for verb, resource, on_control in REQUIRED_ACCESS:
            kubectl = self.control if on_control else self.data
            args = ["auth", "can-i", verb, resource, "--request-timeout=5s"]
            if resource not in ("namespaces",):
                args += ["-n", self.vars["NAMESPACE"] if not on_control else self.vars["ROOT_NAMESPACE"]]
            if kubectl.run(args, timeout=10, check=False).stdout.strip() != "yes":
                missing.append(f"{verb} {resource}")
        if missing:
            raise EnvironmentProblem(f"missing RBAC permissions: {', '.join(missing)}")
        for name in (self.vars[k] for k in ("NAMESPACE", "BOOKINFO_NAMESPACE", "EXTERNAL_NAMESPACE")):
            if self.data.run(["get", "namespace", name], timeout=10, check=False).returncode == 0:
                raise EnvironmentProblem(
                    f"namespace {name} already exists: choose another --namespace-prefix"
                )

    def _detect(self) -> None:
        """JWKS fetch mode from istiod's env (managed meshes hide istiod: keep the configured mode)."""
        assert self.data is not None
        got = self.data.run(
            ["get", "deployment", "istiod", "-n", self.vars["ROOT_NAMESPACE"], "-o", "json"],
            timeout=10,
            check=False,
        )
        if got.returncode != 0:
            return
        import json

        dep = json.loads(got.stdout)
        for container in dep["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if container["name"] == "discovery":
                self.fetch_mode = plans.fetch_mode_of(env.get("PILOT_JWT_ENABLE_REMOTE_JWKS"))
                image = container.get("image", "")
                self.version = image.rsplit(":", 1)[-1] if ":" in image else self.version

    def _ingress(self) -> None:
        if self.ingress_url:
            return
        assert self.data is not None
        got = self.data.run(
            [
                "get",
                "svc",
                "istio-ingressgateway",
                "-n",
                self.vars["ROOT_NAMESPACE"],
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}",
            ],
            timeout=10,
            check=False,
        )
        address = got.stdout.strip()
        if address:
            self.ingress_url = f"http://{address}:80"
        else:
            log("no load-balancer address on istio-ingressgateway: ingress cases need --ingress-url")

    def start(self) -> None:
        started = time.monotonic()
        kubectl = self._kubectl_binary()
        self.data = Kubectl(kubectl, self.extra.get("kubeconfig"), self.extra.get("context"))
        control = self.extra.get("control_plane_kubeconfig")
        self.control = Kubectl(kubectl, control) if control else self.data
        self.preflight()
        self._detect()
        self._ingress()
        self.phase("connect", started)
        self.created_namespaces = [
            self.vars[k] for k in ("NAMESPACE", "BOOKINFO_NAMESPACE", "EXTERNAL_NAMESPACE")
        ]
        ca_cert, ca_key = pki.make_ca()
        cert, key = pki.server_cert(ca_cert, ca_key, [self.vars["EXTERNAL_JWKS_HOST"]])
        self.deploy_workloads((cert, key, ca_cert))

    def artifacts(self, directory: str) -> list[str]:
        self.failed = True
        return super().artifacts(directory)

    def stop(self) -> None:
        self.report_timings()
        if self.data is None:
            return
        if self.failed and self.extra.get("keep_on_failure"):
            log(f"kept namespaces {', '.join(self.created_namespaces)} (--keep-on-failure)")
            self.data = None
            return
        try:
            self.clear()
        except EnvironmentProblem as exc:
            log(f"could not delete scenario resources: {exc}")
        for name in self.created_namespaces:
            self.data.run(["delete", "namespace", name, "--ignore-not-found", "--wait=false"], check=False)
        self.created_namespaces, self.data = [], None

    def info(self) -> MeshInfo:
        return MeshInfo(
            target="cluster",
            flavor=self.settings.flavor,
            version=self.version,
            jwks_fetch_mode=self.fetch_mode,
            details={
                "namespace_prefix": self.prefix,
                "context": str(self.extra.get("context") or ""),
                "control_plane": "separate" if self.extra.get("control_plane_kubeconfig") else "same",
                **{f"phase_{k}_s": str(v) for k, v in self.timings.items()},
            },
        )
