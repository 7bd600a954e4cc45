"""``--target kind``: pinned kind cluster, Istio (profile demo), sample workloads, NodePort ingress."""

from __future__ import annotations

import base64
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meshjwt import pki
from meshjwt.errors import EnvironmentProblem
from meshjwt.kube import binaries, plans, workloads
from meshjwt.kube.docker import require_docker
from meshjwt.kube.kubectl import Kubectl
from meshjwt.kube.tools import describe, run_tool
from meshjwt.kube.versions import DEFAULT_ISTIO, ISTIO_RELEASES, KIND_VERSION, KUBECTL_VERSION, istio_release
from meshjwt.mesh import MeshInfo
from meshjwt.samples import EXTERNAL_JWKS_HOST
from meshjwt.settings import Settings, option
from meshjwt.targets.kube import KubeMesh, KubeOptions, log

STATE_CONFIGMAP = "meshjwt-state"
CA_SECRET = "meshjwt-external-ca"


@dataclass(frozen=True)
class KindOptions(KubeOptions):
    """The kind target's options (and the cluster targets' common ones)."""

    istio_version: str | None = field(default=None, metadata=option(
        "--istio-version", f"kind: Istio to install (supported: {', '.join(sorted(ISTIO_RELEASES))}; default "
        f"{DEFAULT_ISTIO}, each with its pinned patch and node image)", metavar="X.Y[.Z]"))
    keep_cluster: bool = field(default=False, metadata=option(
        "--keep-cluster", "kind: keep the cluster after the run and reuse it next time (refused if it was made "
        "with another configuration)"))
    cluster_name: str | None = field(default=None, metadata=option(
        "--cluster-name", "kind: cluster name (default meshjwt-<istio minor>)"))
    kind_path: str | None = field(default=None, metadata=option(
        "--kind-path", "kind: use this kind binary instead of the pinned download (air-gapped sites)"))
    istioctl_path: str | None = field(default=None, metadata=option(
        "--istioctl-path", "kind: use this istioctl (must match --istio-version) instead of the download"))


class KindMesh(KubeMesh):
    """Creates (or, with --keep-cluster, reuses) ``meshjwt-<minor>`` and deletes what it created."""

    name = "kind"
    Options = KindOptions
    options: KindOptions  # made by KubeMesh.__init__ from this class's Options

    def __init__(self, settings: Settings, jwks_json: str) -> None:
        super().__init__(settings, jwks_json)
        self.release = istio_release(self.options.istio_version)
        self.cluster_name = (
            self.options.cluster_name or f"meshjwt-{self.release.minor.replace('.', '-')}"
        )
        self.keep = self.options.keep_cluster
        self.workdir = binaries.cache_dir() / "kind" / self.cluster_name
        self.kubeconfig = self.workdir / "kubeconfig"
        self.cluster = None
        self.created = False
        self.failed = False  # a case failed or the start did: export kind's logs before deleting
        self.kind = "kind"
        self.vars = {
            "NAMESPACE": "foo",
            "BOOKINFO_NAMESPACE": "default",
            "ROOT_NAMESPACE": "istio-system",
            "EXTERNAL_NAMESPACE": "jwks-external",
            "EXTERNAL_JWKS_HOST": EXTERNAL_JWKS_HOST,
        }
        self.ingress_url = self.ingress_url or f"http://127.0.0.1:{plans.INGRESS_NODE_PORTS['http']}"

    # --- plans (pure; unit-tested) -----------------------------------------------------------
    def overlay(self, ca_pem: str | None = None, *, fetch_mode: str | None = None) -> dict:
        mode = fetch_mode or self.settings.jwks_fetch_mode
        overlay = plans.istio_operator(mode, image_registry=self.options.image_registry)
        if ca_pem:
            overlay["spec"]["values"]["pilot"]["jwksResolverExtraRootCA"] = ca_pem
        if self.settings.path_normalization:  # --path-normalization (meshjwt.security.pytest_plugin)
            overlay["spec"]["meshConfig"]["pathNormalization"] = {"normalization": self.settings.path_normalization}
        return overlay

    def config_hash(self) -> str:
        """What the cluster was made with: node image, kind, Istio patch, install overlay (CA and JWKS fetch
        mode excluded: the run switches istiod's mode as scenarios need)."""
        return plans.config_hash(
            plans.kind_config(self.release.node_image, plans.INGRESS_NODE_PORTS),
            KIND_VERSION,
            self.release.patch,
            self.overlay(fetch_mode="istiod"),
        )

    def kind_config(self) -> dict:
        return plans.kind_config(
            self.release.node_image, plans.INGRESS_NODE_PORTS, config_label=self.config_hash()
        )

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        require_docker()
        started = time.monotonic()
        self.kind = str(binaries.resolve("kind", KIND_VERSION, self.options.kind_path))
        kubectl = str(binaries.resolve("kubectl", KUBECTL_VERSION, self.options.kubectl_path))
        istioctl = str(binaries.resolve("istioctl", self.release.patch, self.options.istioctl_path))
        self.phase("binaries", started)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = Kubectl(kubectl, str(self.kubeconfig))
        self._create_cluster(kubectl)
        self._install_istio(istioctl)
        self._external_dns()
        self.deploy_workloads(self._external_tls())

    def _exists(self) -> bool:
        out = run_tool([self.kind, "get", "clusters"], what="kind get clusters", timeout=self.settings.timeouts.start)
        return self.cluster_name in out.split()

    def _create_cluster(self, kubectl: str) -> None:
        from pytest_kind import KindCluster

        started = time.monotonic()
        expected = self.config_hash()
        exists = self._exists()
        if exists and not self.keep:
            raise EnvironmentProblem(
                f"kind cluster {self.cluster_name} already exists: pass --keep-cluster to reuse it, or delete"
                f" it with `kind delete cluster --name {self.cluster_name}`"
            )
        config_file = self.workdir / "kind-config.yaml"
        config_file.write_text(yaml.safe_dump(self.kind_config(), sort_keys=False))
        self.cluster = KindCluster(
            self.cluster_name, kubeconfig=self.kubeconfig, kind_path=Path(self.kind), kubectl_path=Path(kubectl)
        )
        if exists:
            run_tool([self.kind, "export", "kubeconfig", "--name", self.cluster_name, "--kubeconfig",
                      str(self.kubeconfig)], what="kind export kubeconfig", timeout=60)  # fmt: skip
            assert self.data is not None
            nodes = self.data.json(["get", "nodes"]).get("items", [])
            found = {n["metadata"].get("labels", {}).get(plans.CONFIG_HASH_LABEL) for n in nodes}
            if found != {expected}:
                self.cluster = None  # not ours to delete
                raise EnvironmentProblem(
                    f"kind cluster {self.cluster_name} was made with another configuration (hash {found} ≠"
                    f" {expected}): delete it with `kind delete cluster --name {self.cluster_name}`"
                )
            log(f"reusing kind cluster {self.cluster_name} (config {expected})")
        else:
            log(f"creating kind cluster {self.cluster_name} ({self.release.node_image})")
            self.created = True  # from here on, stop() deletes it, whatever fails next
            # kind itself (its reason on one line), then pytest-kind finds it and loads its kubeconfig
            run_tool([self.kind, "create", "cluster", f"--name={self.cluster_name}",
                      f"--kubeconfig={self.kubeconfig}", "--config", str(config_file)],
                     what=f"kind create cluster {self.cluster_name}", timeout=self.settings.timeouts.start)  # fmt: skip
        try:
            self.cluster.create(config_file=config_file)
        except Exception as exc:  # noqa: BLE001 - pytest-kind raises CalledProcessError and pykube's errors
            raise EnvironmentProblem(f"kind cluster {self.cluster_name}: {describe(exc)}") from None
        assert self.data is not None
        wait = self.settings.timeouts.start
        self.data.run(["wait", "--for=condition=Ready", "node", "--all", f"--timeout={int(wait)}s"], timeout=wait + 10)
        self.phase("create", started)

    def _external_ca(self) -> tuple[str, str]:
        """The cluster's external-JWKS CA, made once per cluster and kept in istio-system."""
        assert self.data is not None
        self.data.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}])
        got = self.data.run(["get", "secret", CA_SECRET, "-n", "istio-system", "-o", "json"], check=False)
        if got.returncode == 0:
            data = yaml.safe_load(got.stdout)["data"]
            return tuple(base64.b64decode(data[k]).decode() for k in ("ca.crt", "ca.key"))  # type: ignore[return-value]
        cert, key = pki.make_ca(days=365)
        self.data.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": CA_SECRET, "namespace": "istio-system"},
                    "stringData": {"ca.crt": cert, "ca.key": key},
                }
            ]
        )
        return cert, key

    def _install_istio(self, istioctl: str) -> None:

        assert self.data is not None
        started = time.monotonic()
        expected = self.config_hash()
        state = self.data.run(
            ["get", "configmap", STATE_CONFIGMAP, "-n", "istio-system", "-o", "jsonpath={.data.hash}"],
            check=False,
        )
        if state.returncode == 0 and state.stdout.strip() == expected:
            log(f"Istio {self.release.patch} already installed")
        else:
            ca_cert, _ = self._external_ca()
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.workdir, delete=False) as overlay:
                yaml.safe_dump(self.overlay(ca_cert), overlay, sort_keys=False)
            budget = self.settings.timeouts.install
            args = plans.istioctl_install_args(
                istioctl, overlay.name, str(self.kubeconfig), self.release, readiness_timeout=budget
            )
            log(f"installing Istio {self.release.patch} (profile demo, JWKS fetch mode {self.fetch_mode})")
            try:
                run_tool(args, what=f"istioctl install (Istio {self.release.patch})", timeout=budget + 60)
            finally:
                Path(overlay.name).unlink(missing_ok=True)
            self.data.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": STATE_CONFIGMAP, "namespace": "istio-system"},
                        "data": {"hash": expected, "istio": self.release.patch},
                    }
                ]
            )
        for deployment, proxy in (("istiod", "none"), ("istio-ingressgateway", "gateway")):
            self.wait_deployment("istio-system", deployment, proxy=proxy, timeout=self.settings.timeouts.install,
                                 name="install")  # fmt: skip
        self.switch_fetch_mode(self.settings.jwks_fetch_mode)  # a kept cluster may have been left switched
        self.phase("install", started)

    def switch_fetch_mode(self, mode: str) -> None:
        """Set istiod's PILOT_JWT_ENABLE_REMOTE_JWKS to ``mode`` and wait for the new istiod (the kind target
        owns its cluster, so a scenario that needs another JWKS fetch mode gets it)."""
        assert self.data is not None
        dep = self.data.json(["get", "deployment", "istiod", "-n", "istio-system"])
        containers = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for c in containers if c["name"] == "discovery" for e in c.get("env", [])}
        want = plans.REMOTE_JWKS_ENV[mode]
        self.jwks_refresh_interval = plans.refresh_seconds(env.get("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"))
        if plans.fetch_mode_of(env.get("PILOT_JWT_ENABLE_REMOTE_JWKS")) == mode:
            self.fetch_mode = mode
            return
        started = time.monotonic()
        log(f"switching istiod to JWKS fetch mode {mode} (PILOT_JWT_ENABLE_REMOTE_JWKS={want})")
        self.data.run(["set", "env", "deployment/istiod", "-n", "istio-system", "-c", "discovery",
                       f"PILOT_JWT_ENABLE_REMOTE_JWKS={want}"], timeout=self.settings.timeouts.apply)  # fmt: skip
        self.wait_deployment("istio-system", "istiod", proxy="none", timeout=self.settings.timeouts.install,
                             name="install")  # fmt: skip
        self.fetch_mode = mode
        self.phase(f"switch-{mode}", started)

    def apply(self, resources, *, jwks_fetch_mode: str | None = None) -> None:  # type: ignore[no-untyped-def]
        """Apply; a scenario that needs another JWKS fetch mode switches istiod first (the cluster is ours)."""
        if jwks_fetch_mode and jwks_fetch_mode != self.fetch_mode:
            self.switch_fetch_mode(jwks_fetch_mode)
        elif not jwks_fetch_mode and self.fetch_mode != self.settings.jwks_fetch_mode:
            self.switch_fetch_mode(self.settings.jwks_fetch_mode)
        super().apply(resources, jwks_fetch_mode=jwks_fetch_mode)

    def _external_dns(self) -> None:
        """CoreDNS answers the external JWKS host with the jwks-external Service."""
        assert self.data is not None
        cm = self.data.json(["get", "configmap", "coredns", "-n", "kube-system"])
        target = f"jwks-external.{self.vars['EXTERNAL_NAMESPACE']}.svc.cluster.local"
        corefile = workloads.corefile_with_rewrite(cm["data"]["Corefile"], EXTERNAL_JWKS_HOST, target)
        if corefile != cm["data"]["Corefile"]:
            cm["data"]["Corefile"] = corefile
            for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
                cm["metadata"].pop(key, None)
            self.data.apply([cm])
            self.data.run(["rollout", "restart", "-n", "kube-system", "deployment/coredns"])
        self.wait_deployment("kube-system", "coredns", proxy="none", timeout=self.settings.timeouts.deploy,
                             name="deploy")  # fmt: skip

    def _external_tls(self) -> tuple[str, str, str]:
        """The external JWKS endpoint's (cert, key, CA cert) PEMs."""
        ca_cert, ca_key = self._external_ca()
        fqdn = f"jwks-external.{self.vars['EXTERNAL_NAMESPACE']}.svc.cluster.local"
        return (*pki.server_cert(ca_cert, ca_key, [EXTERNAL_JWKS_HOST, fqdn], days=365), ca_cert)

    def artifacts(self, directory: str) -> list[str]:
        self.failed = True
        return super().artifacts(directory)

    def stop(self) -> None:
        self.report_timings()
        if self.cluster is None:
            return
        cluster, self.cluster = self.cluster, None
        if self.keep or not self.created:
            try:
                self.clear()
            except EnvironmentProblem as exc:
                log(f"could not clear scenario resources: {exc}")
            log(f"kept kind cluster {self.cluster_name} (kubeconfig {self.kubeconfig})")
            return
        if self.failed:  # the evidence goes before the cluster does
            logs = self.settings.target_reports_dir / "kind-logs"
            try:
                run_tool([self.kind, "export", "logs", str(logs), "--name", self.cluster_name],
                         what="kind export logs", timeout=120)  # fmt: skip
                log(f"kind logs exported to {logs}")
            except EnvironmentProblem as exc:
                log(f"could not export kind logs: {exc}")
        started = time.monotonic()
        try:
            cluster.delete()
        except Exception as exc:  # noqa: BLE001 - pytest-kind raises CalledProcessError
            log(f"could not delete kind cluster {self.cluster_name}: {describe(exc)}; delete it with "
                f"`kind delete cluster --name {self.cluster_name}`")  # fmt: skip
        self.phase("delete", started)

    def info(self) -> MeshInfo:
        return MeshInfo(
            target="kind",
            flavor="istio",
            version=self.release.patch,
            jwks_fetch_mode=self.fetch_mode,
            details={
                "node_image": self.release.node_image,
                "kind": KIND_VERSION,
                "kubectl": KUBECTL_VERSION,
                "cluster": self.cluster_name,
                "config_hash": self.config_hash(),
                **{f"phase_{k}_s": str(v) for k, v in self.timings.items()},
            },
        )
