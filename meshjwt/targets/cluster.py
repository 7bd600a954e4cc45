"""``--target cluster``: an existing cluster with Istio (or a managed mesh); this run's namespaces only."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshjwt import pki
from meshjwt.errors import ConfigError, EnvironmentProblem, TargetCannot
from meshjwt.kube import binaries, plans
from meshjwt.kube.kubectl import Kubectl, first_line
from meshjwt.kube.versions import KUBECTL_VERSION
from meshjwt.mesh import MeshInfo
from meshjwt.settings import Settings, option
from meshjwt.targets.kube import KubeMesh, KubeOptions, log

#: Istio kinds the run applies (group → plural resource names), found through discovery.
ISTIO_RESOURCES = {
    "security.istio.io": ("requestauthentications", "authorizationpolicies"),
    "networking.istio.io": ("serviceentries", "destinationrules", "gateways", "virtualservices"),
}
#: what the run does in each of its own namespaces of the data-plane cluster (checked with ``auth can-i``)
WORKLOAD_ACCESS = tuple((verb, resource) for resource in ("deployments.apps", "services", "serviceaccounts",
                        "configmaps", "secrets") for verb in ("create", "get", "patch", "delete")) + (
    ("get", "pods"), ("list", "pods"), ("create", "pods/exec"),
)  # fmt: skip
#: what it does with Istio resources where it applies them (control plane): apply (get/create/patch), delete
ISTIO_ACCESS = tuple((verb, f"{plural}.{group}") for group, plurals in ISTIO_RESOURCES.items()
                     for plural in plurals for verb in ("get", "create", "patch", "delete"))  # fmt: skip
#: namespace-scoped Istio kinds that scenarios put in the root namespace (mesh-wide or gateway policies)
ROOT_KINDS = {"RequestAuthentication": "requestauthentications.security.istio.io",
              "AuthorizationPolicy": "authorizationpolicies.security.istio.io"}
SEMVER = re.compile(r"^v?(\d+\.\d+(?:\.\d+)?)(?:[-+].*)?$")


def istio_version_of(deployment: dict) -> str | None:
    """The Istio version an istiod Deployment runs: its ``app.kubernetes.io/version`` label, else its
    image tag — never a digest (``@sha256:…``) or a non-version tag (``latest``)."""
    labels = deployment.get("metadata", {}).get("labels") or {}
    candidates = [labels.get("app.kubernetes.io/version", "")]
    for container in deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        image = container.get("image", "").split("@", 1)[0]
        if container.get("name") == "discovery" and ":" in image.rsplit("/", 1)[-1]:
            candidates.append(image.rsplit(":", 1)[1])
    for text in candidates:
        found = SEMVER.match(text or "")
        if found and found.group(1) != "1.0.0":  # Istio's own test manifests say 1.0.0
            return found.group(1)
    return None


def pick_istiod(deployments: list[dict], revision: str | None) -> dict | None:
    """istiod of ``revision`` (``istiod-<rev>`` / label ``istio.io/rev``), else the default one, else any."""
    def rev(dep: dict) -> str:
        return (dep.get("metadata", {}).get("labels") or {}).get("istio.io/rev", "default")

    if revision:
        return next((d for d in deployments if rev(d) == revision or d["metadata"]["name"] == f"istiod-{revision}"),
                    None)  # fmt: skip
    return next((d for d in deployments if d["metadata"]["name"] == "istiod"), deployments[0] if deployments else None)


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


@dataclass(frozen=True)
class ClusterOptions(KubeOptions):
    """The cluster target's options (and the cluster targets' common ones)."""

    kubeconfig: str | None = field(default=None, metadata=option(
        "--kubeconfig", "cluster: kubeconfig of the data-plane cluster (default: $KUBECONFIG / ~/.kube/config)"))
    context: str | None = field(default=None, metadata=option("--context", "cluster: kubeconfig context to use"))
    control_plane_kubeconfig: str | None = field(default=None, metadata=option(
        "--control-plane-kubeconfig", "cluster: kubeconfig where Istio resources are applied (managed meshes)"))
    namespace_prefix: str = field(default="mjwt", metadata=option(
        "--namespace-prefix", "cluster: prefix of this run's namespaces (a random suffix follows; default mjwt); "
        "existing namespaces are never reused"))
    keep_on_failure: bool = field(default=False, metadata=option(
        "--keep-on-failure", "cluster: keep this run's namespaces when a case failed"))
    root_namespace: str = field(default="istio-system", metadata=option(
        "--root-namespace", "cluster: Istio root namespace (default istio-system)"))


def kubeconfig_problem(files: Sequence[str], context: str | None) -> str | None:
    """Why kubectl could not connect with these kubeconfig files (merged as kubectl merges them), in one line; None
    when they name clusters and a context to use."""
    clusters: list[Any] = []
    contexts: list[str] = []
    current = None
    for name in files:
        try:
            doc = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            return f"kubeconfig {name} cannot be read: {first_line(str(exc))}"
        if not isinstance(doc, dict):
            continue
        clusters += doc.get("clusters") or []
        contexts += [c.get("name") for c in doc.get("contexts") or [] if isinstance(c, dict)]
        current = current or doc.get("current-context")
    shown = os.pathsep.join(files)
    if not clusters:
        return f"kubeconfig {shown} has no clusters: pass --kubeconfig with the cluster's kubeconfig"
    if not (context or current):
        choices = f" (its contexts: {', '.join(map(str, contexts))})" if contexts else ""
        return f"kubeconfig {shown} has no current context: pass --context NAME{choices}"
    return None


class ClusterMesh(KubeMesh):
    """Connects with --kubeconfig/--context; deletes only the namespaces it created (unless kept)."""

    name = "cluster"
    Options = ClusterOptions
    options: ClusterOptions  # made by KubeMesh.__init__ from this class's Options

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        super().__init__(settings, jwks_json)
        # prefix + random suffix: back-to-back runs never meet a namespace still terminating
        self.prefix = f"{self.options.namespace_prefix}-{secrets.token_hex(3)}"
        root = self.options.root_namespace
        self.vars = {**namespace_names(self.prefix), "ROOT_NAMESPACE": root}
        self.vars["EXTERNAL_JWKS_HOST"] = f"jwks-external.{self.vars['EXTERNAL_NAMESPACE']}.svc.cluster.local"
        self.created_namespaces: list[str] = []
        self.failed = False
        self.version = settings.version
        self.root_denied: list[str] = []
        self.detected: dict[str, str] = {}

    def _kubectl_binary(self) -> str:
        given = self.options.kubectl_path
        if given or not shutil.which("kubectl"):
            return str(binaries.resolve("kubectl", KUBECTL_VERSION, given))
        return str(shutil.which("kubectl"))

    def _kubeconfig_given(self) -> None:
        """No kubeconfig at all, or one without clusters or a current context, is one line, not kubectl's
        'connection to the server localhost:8080 was refused'."""
        if self.options.kubeconfig:
            files = [self.options.kubeconfig]
        elif os.environ.get("KUBECONFIG"):
            files = [f for f in os.environ["KUBECONFIG"].split(os.pathsep) if f]
        elif (Path.home() / ".kube" / "config").is_file():
            files = [str(Path.home() / ".kube" / "config")]
        else:
            raise ConfigError("no kubeconfig: pass --kubeconfig or set KUBECONFIG")
        problem = kubeconfig_problem(files, self.options.context)
        if problem is None and self.options.control_plane_kubeconfig:
            problem = kubeconfig_problem([self.options.control_plane_kubeconfig], None)
        if problem:
            raise ConfigError(problem)

    def preflight(self) -> None:
        """Reachable, Istio's kinds served, every permission the run uses; each failure one line, in seconds."""
        assert self.data is not None and self.control is not None
        planes = (("cluster", self.data),) if self.control is self.data else (
            ("data-plane cluster", self.data), ("control plane", self.control))  # fmt: skip
        for label, kubectl in planes:
            done = kubectl.run(["version", "-o", "json", "--request-timeout=5s"], timeout=10, check=False)
            if done.returncode != 0 or '"serverVersion"' not in done.stdout:
                where = kubectl.context or kubectl.kubeconfig or "current context"
                raise EnvironmentProblem(f"cannot reach the {label} ({where}): {first_line(done.stderr)}")
        # discovery, not `get crd`: every authenticated user may discover, a namespace-only one may not read CRDs
        missing = []
        for group, plurals in ISTIO_RESOURCES.items():
            done = self.control.run(["api-resources", f"--api-group={group}", "-o", "name"], timeout=15, check=False)
            served = {line.split(".", 1)[0] for line in done.stdout.split()}
            missing += [f"{p}.{group}" for p in plurals if p not in served]
        if missing:
            raise EnvironmentProblem(f"the control plane serves no {', '.join(missing)}: is Istio installed there?")
        own = [self.vars[k] for k in ("NAMESPACE", "BOOKINFO_NAMESPACE", "EXTERNAL_NAMESPACE")]
        checks = [(self.data, "data-plane cluster", verb, "namespaces", None) for verb in ("create", "delete")]
        checks += [(self.data, "data-plane cluster", v, r, ns) for ns in own for v, r in WORKLOAD_ACCESS]
        istio_ns = [self.vars["NAMESPACE"], self.vars["BOOKINFO_NAMESPACE"]]
        checks += [(self.control, "control plane", v, r, ns) for ns in istio_ns for v, r in ISTIO_ACCESS]
        if self.control is not self.data:
            checks += [(self.control, "control plane", verb, "namespaces", None) for verb in ("create", "delete")]
        with ThreadPoolExecutor(max_workers=8) as pool:  # ~90 checks: one kubectl each, side by side
            allowed = list(pool.map(lambda c: self._can(c[0], c[2], c[3], c[4]), checks))
        denied = [f"{verb} {res}{f' in {ns}' if ns else ''} ({where})"
                  for (_, where, verb, res, ns), ok in zip(checks, allowed, strict=True) if not ok]  # fmt: skip
        if denied:
            raise EnvironmentProblem(f"missing RBAC permissions: {'; '.join(denied)}")
        root = self.vars["ROOT_NAMESPACE"]
        self.root_denied = sorted({res for res in ROOT_KINDS.values() for verb in ("create", "patch", "delete")
                                   if not self._can(self.control, verb, res, root)})  # fmt: skip
        if self.root_denied:
            log(f"no permission for {', '.join(self.root_denied)} in {root}: scenarios that put them there "
                "will be reported unsupported")  # fmt: skip
        if not all(self._can(self.data, verb, res, root) for verb, res in (("get", "deployments.apps"),
                                                                            ("create", "pods/exec"))):  # fmt: skip
            self.unprobed.add(f"{root}/istio-ingressgateway")
            log(f"no permission to exec into the ingress gateway in {root}: after each apply its cases rely on "
                "convergence polling alone (N consecutive agreements), not on reading its config")  # fmt: skip
        for kubectl in {id(k): k for _, k in planes}.values():
            for name in own:
                if kubectl.run(["get", "namespace", name], timeout=10, check=False).returncode == 0:
                    raise EnvironmentProblem(f"namespace {name} already exists: choose another --namespace-prefix")

    @staticmethod
    def _can(kubectl: Kubectl, verb: str, resource: str, namespace: str | None) -> bool:
        args = ["auth", "can-i", verb, resource, "--request-timeout=5s", *(["-n", namespace] if namespace else [])]
        return kubectl.run(args, timeout=10, check=False).stdout.strip() == "yes"

    def _detect(self) -> None:
        """Version and JWKS fetch mode from istiod (control plane first; a revision's ``istiod-<rev>`` when the
        injection label names one); a mesh that hides istiod keeps the configured values, and says so."""
        revision = None
        key, _, value = (self.options.injection_label or "").partition("=")
        if key == "istio.io/rev" and value:
            revision = value
        for kubectl in {id(k): k for k in (self.control, self.data) if k}.values():
            got = kubectl.run(["get", "deployments", "-n", self.vars["ROOT_NAMESPACE"], "-l", "app=istiod",
                               "-o", "json"], timeout=10, check=False)  # fmt: skip
            istiod = pick_istiod(json.loads(got.stdout).get("items", []), revision) if got.returncode == 0 else None
            if istiod is None:
                continue
            self.detected["istiod"] = istiod["metadata"]["name"]
            for container in istiod["spec"]["template"]["spec"]["containers"]:
                if container["name"] == "discovery":
                    env = {e["name"]: e.get("value") for e in container.get("env", [])}
                    self.fetch_mode = plans.fetch_mode_of(env.get("PILOT_JWT_ENABLE_REMOTE_JWKS"))
                    self.jwks_refresh_interval = self._refresh_of(env.get("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"))
            version = istio_version_of(istiod)
            if version:
                self.version, self.detected["version"] = version, "istiod"
            return
        log(f"istiod not visible in {self.vars['ROOT_NAMESPACE']} (managed mesh?): using --mesh-version "
            f"{self.version} and --jwks-fetch-mode {self.fetch_mode}")  # fmt: skip

    @staticmethod
    def _refresh_of(value: str | None) -> float | None:
        """istiod's JWKS refresh interval from its env (unset: 20 min); None, said once, if it does not parse."""
        try:
            return plans.refresh_seconds(value)
        except ValueError as exc:
            log(f"{exc}: JWKS lifecycle cases that wait for istiod's refresh will be unsupported")
            return None

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
        self._kubeconfig_given()
        kubectl = self._kubectl_binary()
        self.data = Kubectl(kubectl, self.options.kubeconfig, self.options.context)
        control = self.options.control_plane_kubeconfig
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
        if self.failed and self.options.keep_on_failure:
            log(f"kept namespaces {', '.join(self.created_namespaces)} (--keep-on-failure)")
            self.data = None
            return
        try:
            self.clear()
        except EnvironmentProblem as exc:
            log(f"could not delete scenario resources: {exc}")
        planes = {id(k): k for k in (self.data, self.control) if k is not None}.values()
        for kubectl in planes:  # made on both planes when they are split (Gateway, VirtualService live there)
            for name in self.created_namespaces:
                kubectl.run(["delete", "namespace", name, "--ignore-not-found", "--wait=false"], check=False)
        self.created_namespaces, self.data, self.control = [], None, None

    def apply(self, resources: Sequence[Mapping[str, Any]], *, jwks_fetch_mode: str | None = None) -> None:
        """Apply, unless the run cannot do it on a mesh it does not own: resources in a root namespace it
        may not write, or an istiod-fetched https JWKS behind the run's own CA (istiod trusts only the
        roots its owner gave it)."""
        root, mode = self.vars["ROOT_NAMESPACE"], jwks_fetch_mode or self.fetch_mode
        external_https = f"https://{self.vars['EXTERNAL_JWKS_HOST']}"
        for resource in resources:
            plural = ROOT_KINDS.get(str(resource.get("kind")))
            if (resource.get("metadata") or {}).get("namespace") == root and plural in self.root_denied:
                raise TargetCannot(f"no permission to write {plural} in {root} (namespace-only RBAC)")
            for rule in (resource.get("spec") or {}).get("jwtRules") or []:
                if mode == "istiod" and str(rule.get("jwksUri", "")).startswith(external_https):
                    raise TargetCannot("istiod fetches this https JWKS itself and cannot be made to trust the run's "
                                       "CA on a cluster the suite does not own (the kind target can)")
        super().apply(resources, jwks_fetch_mode=jwks_fetch_mode)

    def info(self) -> MeshInfo:
        return MeshInfo(
            target="cluster",
            flavor=self.settings.flavor,
            version=self.version,
            jwks_fetch_mode=self.fetch_mode,
            details={
                "namespace_prefix": self.prefix,
                "context": str(self.options.context or ""),
                "control_plane": "separate" if self.options.control_plane_kubeconfig else "same",
                "version_from": self.detected.get("version", "--mesh-version (istiod not visible)"),
                **({"istiod": self.detected["istiod"]} if "istiod" in self.detected else {}),
                **{f"phase_{k}_s": str(v) for k, v in self.timings.items()},
            },
        )
