"""The kind and cluster targets' own code, end to end against simulated clusters (real kubectl, real Envoy):
each fix of what broke them at first contact, shown by what the code does there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SimCluster, clusters_left, settings
from meshjwt.errors import EnvironmentProblem
from meshjwt.kube.kubectl import Kubectl
from meshjwt.kube.versions import DEFAULT_ISTIO, istio_release
from meshjwt.mesh import Request
from meshjwt.scenarios.loader import BUILTIN_DIR, load_scenarios
from meshjwt.scenarios.runner import ScenarioRunner
from meshjwt.targets.cluster import ClusterMesh
from meshjwt.targets.kind import KindMesh
from meshjwt.tokens import TokenFactory
from rehearsal.tools import REPO

pytestmark = pytest.mark.integration  # every test here starts a simulated cluster, kubectl and Envoy

DENY_ALL = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-all"}, "spec": {"selector": {"matchLabels": {"app": "httpbin"}}}}  # fmt: skip


def test_kind_target_installs_istio_waits_for_the_gateway_and_deletes_its_cluster(tmp_path, kind_tools, jwks):
    """§2.1: the gateway's one container is istio-proxy; the install wait accepts it (it waited 600 s for
    'no istio-proxy' before). §3: a scenario's cases cost one kubectl exec per convergence round."""
    from meshjwt.keys import KeySet

    keys = KeySet()
    mesh = KindMesh(settings("kind", tmp_path / "reports", **kind_tools), keys.jwks_json())
    try:
        mesh.start()
        assert {"create", "install", "deploy"} <= set(mesh.timings)
        gateway = mesh.data.json(["get", "pods", "-n", "istio-system", "-l", "app=istio-ingressgateway"])["items"][0]
        assert [c["name"] for c in gateway["spec"]["containers"]] == ["istio-proxy"]
        scenario = next(s for s in load_scenarios([BUILTIN_DIR]) if s.name == "ra-alone")
        runner = ScenarioRunner(mesh, TokenFactory(keys), mesh.settings)
        runner.plan([(scenario, case) for case in scenario.cases])
        before = mesh.exec_calls
        results = [runner.run(scenario, case) for case in scenario.cases]
        assert all(r.verdict == "passed" for r in results), [r.detail for r in results if r.verdict != "passed"]
        assert mesh.exec_calls - before == 1  # 15 cases, 3 agreeing answers each: one exec
    finally:
        mesh.stop()
    assert clusters_left(kind_tools["kind_path"]) == []


def run_kind_suite(tmp_path: Path, kind_tools: dict[str, str], fail: str) -> subprocess.CompletedProcess[str]:
    """``pytest suites --target kind`` with a failure injected into the simulated kind/istioctl."""
    args = [sys.executable, "-m", "pytest", str(REPO / "suites"), "--target", "kind", "-q", "-p", "no:cacheprovider",
            "--reports-dir", str(tmp_path / "reports"), "--timeout-ready-poll", "0.05", "-k", "ra-alone",
            *(f"--{k.replace('_', '-')}={v}" for k, v in kind_tools.items())]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "MESHJWT_REHEARSAL_FAIL": fail})  # fmt: skip


@pytest.mark.parametrize("fail", ["create", "istioctl-install"])
def test_a_failed_start_is_one_line_keeps_its_evidence_and_leaves_no_cluster(tmp_path, kind_tools, fail):
    """§2.2, §2.3, §2.11: kind or istioctl failing is one line (no traceback, no Exit banner), exit 3, the
    cluster is deleted; diagnostics and kind's logs are collected before it goes."""
    done = run_kind_suite(tmp_path, kind_tools, fail)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("ERROR: kind target:")]
    assert len(errors) == 1, output[-2000:]
    assert "Traceback" not in output and "_pytest.outcomes.Exit" not in output
    what = "kind create cluster" if fail == "create" else "istioctl install"
    assert what in errors[0] and "injected" in errors[0]
    assert clusters_left(kind_tools["kind_path"]) == []
    if fail == "istioctl-install":  # the cluster existed: its evidence was taken before it was deleted
        evidence = tmp_path / "reports" / "kind" / "artifacts" / "start-failure"
        assert (evidence / "pods-foo.txt").is_file() or (evidence / "pods-foo.txt.error").is_file()
        assert (tmp_path / "reports" / "kind" / "kind-logs" / "cluster.log").is_file()
        assert "diagnostics:" in errors[0]


def test_namespace_only_tenant_passes_preflight_without_a_crds_missing_line(tmp_path, managed_mesh, kubectl, jwks):
    """§2.4, §2.5: Istio kinds found by discovery (a tenant may not read CRDs); every permission the run uses
    checked in its own namespaces on both planes; namespaces made on the control plane too, and deleted there."""
    options = {"kubeconfig": managed_mesh.kubeconfig("tenant-data"), "kubectl_path": kubectl,
               "control_plane_kubeconfig": managed_mesh.kubeconfig("tenant-control"), "namespace_prefix": "qual",
               "ingress_url": f"http://127.0.0.1:{managed_mesh.state['gateway_port']}"}  # fmt: skip
    tenant = Kubectl(kubectl, options["kubeconfig"])
    assert tenant.run(["get", "crd", "requestauthentications.security.istio.io"], check=False).returncode != 0
    mesh = ClusterMesh(settings("cluster", tmp_path / "reports", **options), jwks)
    control_admin = Kubectl(kubectl, managed_mesh.kubeconfig("control"))
    try:
        mesh.start()
        ns = mesh.vars["BOOKINFO_NAMESPACE"]
        assert control_admin.run(["get", "namespace", ns], check=False).returncode == 0  # VirtualService lives there
        assert control_admin.json(["get", "virtualservices.networking.istio.io", "-n", ns])["items"]
    finally:
        mesh.stop()
    phase = control_admin.run(["get", "namespace", ns, "-o", "jsonpath={.status.phase}"], check=False)
    assert phase.returncode != 0 or phase.stdout == "Terminating"


def test_missing_permissions_are_one_line_naming_each(tmp_path, golden, kubectl, jwks):
    """§2.4: a tenant whose prefix does not cover the run's namespaces gets every missing permission, on the
    plane it is missing on, in one line."""
    cluster = SimCluster(tmp_path / "sim", "--split", "--tenant-prefix", "other-")
    try:
        options = {"kubeconfig": cluster.kubeconfig("tenant-data"), "kubectl_path": kubectl, "namespace_prefix": "qual",
                   "control_plane_kubeconfig": cluster.kubeconfig("tenant-control")}  # fmt: skip
        mesh = ClusterMesh(settings("cluster", tmp_path / "reports", **options), jwks)
        with pytest.raises(EnvironmentProblem) as caught:
            mesh.start()
        mesh.stop()
    finally:
        cluster.stop()
    message = str(caught.value)
    assert message.startswith(f"missing RBAC permissions: create deployments.apps in {mesh.vars['NAMESPACE']} "
                              "(data-plane cluster)")  # fmt: skip
    assert f"create pods/exec in {mesh.vars['NAMESPACE']} (data-plane cluster)" in message
    assert f"create requestauthentications.security.istio.io in {mesh.vars['NAMESPACE']} (control plane)" in message
    assert "\n" not in message and "CRD" not in message


def test_version_from_istiod_and_back_to_back_runs_never_collide(tmp_path, managed_mesh, kubectl, jwks):
    """§2.6: the mesh version is read from istiod's Deployment (label or tag, never a digest). §2.7: two runs
    with the same prefix, back to back, while the first one's namespaces still terminate."""
    options = {"kubeconfig": managed_mesh.kubeconfig("data"), "kubectl_path": kubectl, "namespace_prefix": "qual",
               "control_plane_kubeconfig": managed_mesh.kubeconfig("control"),
               "ingress_url": f"http://127.0.0.1:{managed_mesh.state['gateway_port']}"}  # fmt: skip
    first = ClusterMesh(settings("cluster", tmp_path / "r1", **options), jwks)
    first.start()
    first.stop()
    second = ClusterMesh(settings("cluster", tmp_path / "r2", **options), jwks)
    try:
        second.start()
        assert second.vars["NAMESPACE"] != first.vars["NAMESPACE"]
        assert second.info().version == istio_release(DEFAULT_ISTIO).patch and second.detected["istiod"] == "istiod"
    finally:
        second.stop()


def test_no_verdict_on_stale_config(tmp_path, golden, kubectl, jwks):
    """§2.9: with a mesh slow to push (0.8 s here), the request right after an apply already sees the new
    policy, because apply waits (timeout 'apply') until the proxy's config_dump shows it; without that
    wait the same request is answered by the stale config."""
    cluster = SimCluster(tmp_path / "sim", "--split", env={"MESHJWT_REHEARSAL_PUSH_DELAY": "0.8"})
    options = {"kubeconfig": cluster.kubeconfig("data"), "control_plane_kubeconfig": cluster.kubeconfig("control"),
               "kubectl_path": kubectl, "namespace_prefix": "qual",
               "ingress_url": f"http://127.0.0.1:{cluster.state['gateway_port']}"}  # fmt: skip
    mesh = ClusterMesh(settings("cluster", tmp_path / "reports", **options), jwks)
    try:
        mesh.start()
        assert mesh.request(Request()).status == 200
        started = time.monotonic()
        mesh.apply([DENY_ALL])
        assert time.monotonic() - started >= 0.8  # it waited for the push
        assert mesh.request(Request()).status == 403  # the very next request: new config
        mesh.apply([])
        assert mesh.request(Request()).status == 200
        mesh.await_proxies = lambda *_: None  # type: ignore[method-assign]  # the old apply: no wait
        mesh.apply([DENY_ALL])
        assert mesh.request(Request()).status == 200  # a verdict now would judge stale config
    finally:
        mesh.stop()
        cluster.stop()
