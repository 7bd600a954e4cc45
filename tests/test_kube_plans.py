"""Unit tests of the kind/Istio command plans, version table, readiness checks and workload rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from istio_golden import need

from meshjwt import pki
from meshjwt.errors import ConfigError
from meshjwt.kube import plans, readiness, workloads
from meshjwt.kube.versions import DEFAULT_ISTIO, ISTIO_RELEASES, istio_release, kube_minor


def test_version_table_is_digest_pinned_and_within_istio_support():
    assert DEFAULT_ISTIO == "1.30"
    for minor, release in ISTIO_RELEASES.items():
        assert release.patch.startswith(minor + ".")
        name, _, digest = release.node_image.partition("@sha256:")
        assert name.startswith("kindest/node:v") and len(digest) == 64
        low, high = (kube_minor(v) for v in release.kubernetes)
        assert low <= kube_minor(release.node_version) <= high


def test_istio_release_resolution():
    assert istio_release(None).minor == DEFAULT_ISTIO
    assert istio_release("1.29").patch == ISTIO_RELEASES["1.29"].patch
    assert istio_release("1.29.7").patch == "1.29.7"
    with pytest.raises(ConfigError, match="unsupported --istio-version"):
        istio_release("1.12")


def test_kind_config_maps_gateway_node_ports_on_localhost():
    config = plans.kind_config(
        ISTIO_RELEASES["1.30"].node_image, {"http": 8080, "https": 8443}, config_label="ab"
    )
    (node,) = config["nodes"]
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and node["image"].count("@sha256:") == 1
    assert node["extraPortMappings"] == [
        {"containerPort": 31080, "hostPort": 8080, "listenAddress": "127.0.0.1", "protocol": "TCP"},
        {"containerPort": 31443, "hostPort": 8443, "listenAddress": "127.0.0.1", "protocol": "TCP"},
    ]
    assert node["labels"] == {plans.CONFIG_HASH_LABEL: "ab"}


def test_config_hash_is_stable_and_sensitive():
    a = plans.config_hash({"x": 1, "y": [1, 2]}, "1.30.3")
    assert a == plans.config_hash({"y": [1, 2], "x": 1}, "1.30.3") and len(a) == 16
    assert a != plans.config_hash({"x": 1, "y": [1, 2]}, "1.29.2")


@pytest.mark.parametrize(("mode", "env"), [("istiod", "false"), ("hybrid", "true"), ("envoy", "envoy")])
def test_istio_operator_overlay(mode, env):
    overlay = plans.istio_operator(mode, image_registry="mirror.example/")
    spec = overlay["spec"]
    assert spec["profile"] == "demo"
    assert spec["values"]["pilot"]["env"]["PILOT_JWT_ENABLE_REMOTE_JWKS"] == env
    assert spec["values"]["global"]["hub"] == "mirror.example/istio"
    ports = {p["name"]: p for p in spec["components"]["ingressGateways"][0]["k8s"]["service"]["ports"]}
    assert ports["http2"] == {"name": "http2", "port": 80, "targetPort": 8080, "nodePort": 31080}
    assert plans.fetch_mode_of(env) == mode
    assert plans.fetch_mode_of(None) == "istiod"


def test_istioctl_and_kubectl_command_lines():
    args = plans.istioctl_install_args("istioctl", "/t/o.yaml", "/t/kc", ISTIO_RELEASES["1.30"], 600)
    assert args[:5] == ["istioctl", "install", "-y", "-f", "/t/o.yaml"]
    assert "--kubeconfig" in args and "600s" in args
    base = plans.kubectl_base("kubectl", "/t/kc", "ctx")
    assert base == ["kubectl", "--kubeconfig", "/t/kc", "--context", "ctx"]
    assert plans.rollout_status_args(base, "foo", "httpbin", 90)[-3:] == [
        "foo",
        "deployment/httpbin",
        "--timeout=90s",
    ]


def test_exec_line_names_container_without_tty_and_stdin_only_when_asked():
    args = plans.exec_args(["kubectl"], "foo", "sleep-1", "sleep", ["curl", "-K", "-"], stdin=True)
    assert args[:8] == ["kubectl", "exec", "-i", "-n", "foo", "sleep-1", "-c", "sleep"]
    assert args[8] == "--" and "-t" not in args and "-it" not in args
    assert "-i" not in plans.exec_args(["kubectl"], "foo", "sleep-1", "sleep", ["true"])


def _dep(ready=1, generation=2, observed=2, replicas=1):
    return {
        "metadata": {"name": "d", "generation": generation},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def test_deployment_rollout_check():
    assert readiness.deployment_rolled_out(_dep())[0]
    assert not readiness.deployment_rolled_out(_dep(observed=1))[0]
    assert not readiness.deployment_rolled_out(_dep(ready=0))[0]
    assert not readiness.deployment_rolled_out(_dep(replicas=2))[0]


def _pod(containers=("app", "istio-proxy"), ready=(True, True), phase="Running", native=False):
    spec = {"containers": [{"name": c} for c in containers if not (native and c == "istio-proxy")]}
    if native:
        spec["initContainers"] = [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}]
    statuses = [{"name": c, "ready": r} for c, r in zip(containers, ready, strict=False)]
    return {
        "metadata": {"name": "p"},
        "spec": spec,
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def test_pod_ready_means_2_of_2_with_sidecar():
    assert readiness.pod_ready(_pod(), proxy="sidecar") == (True, "pod p: 2/2")
    assert readiness.pod_ready(_pod(ready=(True, False)), proxy="sidecar")[1] == "pod p: 1/2 containers ready"
    assert "no istio-proxy" in readiness.pod_ready(_pod(("app",), (True,)), proxy="sidecar")[1]
    assert not readiness.pod_ready(_pod(), proxy="none")[0]
    assert not readiness.pod_ready(_pod(phase="Pending"), proxy="sidecar")[0]
    assert readiness.pod_ready(_pod(native=True), proxy="sidecar")[0]  # native sidecar (init, Always)
    assert not readiness.pods_ready([], proxy="sidecar")[0]


def test_wait_for_times_out_with_last_reason():
    ticks = iter(range(100))
    with pytest.raises(Exception, match="foo/x not ready after 3s: still 1/2"):
        readiness.wait_for(
            lambda: (False, "still 1/2"),
            timeout=3,
            what="foo/x",
            clock=lambda: next(ticks),
            sleep=lambda _: None,
        )


def test_workloads_render_with_mirror_and_required_shapes():
    variables = {
        "NAMESPACE": "foo",
        "BOOKINFO_NAMESPACE": "bi",
        "EXTERNAL_NAMESPACE": "ext",
        "INJECTION_LABEL_KEY": "istio-injection",
        "INJECTION_LABEL_VALUE": "enabled",
    }
    docs = workloads.load(variables, image_registry="mirror.example:5000")
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by[("Namespace", "foo")]["metadata"]["labels"] == {"istio-injection": "enabled"}
    assert by[("Namespace", "ext")]["metadata"]["labels"] == {"istio-injection": "disabled"}
    svc = by[("Service", "httpbin")]["spec"]["ports"][0]
    assert (svc["port"], svc["targetPort"]) == (8000, 8080)
    sleep = by[("Deployment", "sleep")]["spec"]["template"]["spec"]["containers"][0]
    assert sleep["name"] == "sleep" and sleep["command"][-1] == "infinity"
    for doc in docs:
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert c["image"].startswith("mirror.example:5000/") and ":" in c["image"].split("/")[-1]
    vs = by[("VirtualService", "bookinfo")]["spec"]["http"][0]["match"]
    assert {tuple(m["uri"].items())[0] for m in vs} == {
        ("exact", "/productpage"),
        ("exact", "/login"),
        ("exact", "/logout"),
        ("prefix", "/static"),
        ("prefix", "/api/v1/products"),
    }
    assert [d["kind"] for d in docs][:3] == ["Namespace"] * 3


def test_one_placeholder_rule_for_keys_values_and_functions():
    from meshjwt.placeholders import substitute

    doc = {"labels": {"${KEY}": "${VALUE}"}, "items": ["x-${KEY}", 3]}
    assert substitute(doc, {"KEY": "istio.io/rev", "VALUE": "canary"}, where="w") == {
        "labels": {"istio.io/rev": "canary"}, "items": ["x-istio.io/rev", 3]}
    with pytest.raises(ConfigError, match=r"^f.yaml: unknown variable \$\{NOPE\}; known: KEY$"):
        substitute("a: ${NOPE}", {"KEY": "k"}, where="f.yaml")
    assert substitute("${NOPE}", {}, where="w", strict=False) == "${NOPE}"
    lower_a = lambda name: name.lower() if name == "A" else None  # noqa: E731
    assert substitute("${A}-${B}", lower_a, where="w", strict=False) == "a-${B}"


def test_rewrite_image():
    assert workloads.rewrite_image("docker.io/library/nginx:1", "m.example") == "m.example/library/nginx:1"
    assert workloads.rewrite_image("curlimages/curl:8", "m.example/hub") == "m.example/hub/curlimages/curl:8"
    assert workloads.rewrite_image("docker.io/x/y:1", None) == "docker.io/x/y:1"


def test_corefile_rewrite_is_idempotent():
    corefile = ".:53 {\n    errors\n    kubernetes cluster.local\n}\n"
    once = workloads.corefile_with_rewrite(corefile, "jwks.meshjwt.test", "jwks-external.e.svc.cluster.local")
    assert (
        "    rewrite name exact jwks.meshjwt.test jwks-external.e.svc.cluster.local" in once.splitlines()[1]
    )
    assert (
        workloads.corefile_with_rewrite(once, "jwks.meshjwt.test", "jwks-external.e.svc.cluster.local")
        == once
    )


def test_tls_chain_for_external_endpoint():
    from cryptography import x509

    ca, key = pki.make_ca()
    cert, _ = pki.server_cert(ca, key, ["jwks.meshjwt.test", "jwks-external.e.svc.cluster.local"])
    parsed = x509.load_pem_x509_certificate(cert.encode())
    parsed.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.encode()))
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "jwks.meshjwt.test",
        "jwks-external.e.svc.cluster.local",
    ]


def test_each_target_owns_typed_options_that_are_argparse_ready():
    import argparse
    from dataclasses import fields

    from meshjwt.settings import TargetOptions
    from meshjwt.targets.cluster import ClusterMesh, ClusterOptions
    from meshjwt.targets.kind import KindMesh, KindOptions
    from meshjwt.targets.local import LocalMesh, LocalOptions

    def parse(target: type, *argv: str) -> TargetOptions:
        parser = argparse.ArgumentParser()
        for flag, kwargs in target.Options.flags():
            parser.add_argument(flag, **kwargs)
        return target.Options.from_values(vars(parser.parse_args(list(argv))))

    kind = parse(KindMesh, "--kubectl-path", "k", "--keep-cluster", "--istio-version", "1.29")
    assert kind == KindOptions(kubectl_path="k", keep_cluster=True, istio_version="1.29")
    cluster = parse(ClusterMesh, "--kubectl-path", "k", "--keep-on-failure")
    assert cluster == ClusterOptions(kubectl_path="k", keep_on_failure=True)
    assert cluster.root_namespace == "istio-system" and cluster.namespace_prefix == "mjwt"  # defaults kept
    local = parse(LocalMesh, "--local-sidecar-port", "8080", "--jwks-refresh-interval", "0.5")
    assert local.local_sidecar_port == 8080 and local.jwks_refresh_interval == 0.5  # typed, not text
    assert local.envoy_version == "auto"  # a suite run takes the Istio minor's Envoy; a mesh built in code, the wheel's
    assert LocalOptions().envoy_version == "installed"
    kind_names = {f.name for f in fields(KindOptions)}
    cluster_names = {f.name for f in fields(ClusterOptions)}
    assert not kind_names & {"kubeconfig", "namespace_prefix"} and not cluster_names & {"istio_version", "kind_path"}
    # options of another target keep their shared fields only
    assert ClusterOptions.of(kind) == ClusterOptions(kubectl_path="k")




def _running(template_spec: dict) -> dict:
    """A Running pod of ``template_spec`` with every container ready."""
    names = [c["name"] for c in template_spec.get("containers", [])]
    names += [c["name"] for c in template_spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    statuses = [{"name": n, "ready": True} for n in names]
    return {"metadata": {"name": "p"}, "spec": template_spec, "status": {"phase": "Running",
            "containerStatuses": statuses}}  # fmt: skip


@pytest.mark.parametrize(("golden", "proxy"), [("gateway.yaml.injected", "gateway"), ("hello.yaml.injected", "sidecar"),
                                               ("native-sidecar.yaml.injected", "sidecar")])  # fmt: skip
def test_pods_as_istio_injects_them_are_ready_for_their_proxy_kind(golden, proxy):
    """Istio's gateway pod has one container, istio-proxy: ready as a gateway, refused as 'no proxy' (the
    kind target used to wait for the ingress gateway with 'no istio-proxy allowed' and never got there)."""
    obj = next(d for d in yaml.safe_load_all((need("inject") / golden).read_text()) if d)
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
    pod = _running(spec)
    assert readiness.pod_ready(pod, proxy=proxy)[0], readiness.pod_ready(pod, proxy=proxy)
    assert not readiness.pod_ready(pod, proxy="none")[0]
    if proxy == "gateway":
        assert not readiness.pod_ready(pod, proxy="sidecar")[0]  # one container: not app + sidecar


def test_nightly_covers_exactly_the_supported_minors_and_each_release_says_where_it_comes_from():
    from meshjwt.kube.versions import SUPPORTED

    nightly = yaml.safe_load((Path(__file__).resolve().parents[1] / ".github/workflows/nightly.yml").read_text())
    matrix = nightly["jobs"]["e2e"]["strategy"]["matrix"]
    assert sorted(matrix["istio"]) == sorted(SUPPORTED) and "1.29" not in SUPPORTED
    assert all(include["istio"] in SUPPORTED for include in matrix.get("include", []))
    assert all(release.source for release in ISTIO_RELEASES.values())
    assert istio_release("1.30").patch == "1.30.5"  # the latest patch, with the security fixes
