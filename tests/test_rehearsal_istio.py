"""The rehearsal's Istio objects against Istio's golden outputs, the injector, and the istioctl stand-in.

Golden files are read from ``../shared/istio-golden/`` (or ``$MESHJWT_ISTIO_GOLDEN``); without them the
tests that need them skip, naming the folder.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from istio_golden import need
from kubeapi_stub import StubApi

from meshjwt.kube import plans
from rehearsal.istio import golden
from rehearsal.istio.crds import istio_crds
from rehearsal.istio.inject import inject, native_sidecars_default, selected
from rehearsal.istio.settings import istiod_settings
from rehearsal.istio.values import NotSimulated, resolve
from rehearsal.tools import istioctl

REPO = Path(__file__).resolve().parents[1]
VERSION = "1.29.2"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBrehearsal\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def golden_root() -> Path:
    return need("")


@pytest.fixture(scope="module")
def helm(golden_root: Path) -> None:
    pytest.importorskip("helm_python", reason="helm-python-sdk (extra 'rehearsal') renders the gateway template")


def by_kind(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"{len(found)} {kind} {name or ''} in {[(o['kind'], o['metadata']['name']) for o in objects]}"
    )
    return found[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def overlay(mode: str = "hybrid", **extra: Any) -> dict[str, Any]:
    """The overlay the kind target writes (meshjwt.kube.plans), optionally with the CA and meshConfig."""
    ov = plans.istio_operator(mode, image_registry=extra.pop("registry", None))
    if "ca" in extra:
        ov["spec"]["values"]["pilot"]["jwksResolverExtraRootCA"] = extra.pop("ca")
    ov["spec"].update(extra)
    return ov


@pytest.fixture(scope="module")
def installed(helm: None) -> list[dict[str, Any]]:
    from rehearsal.istio.install import install_objects

    ov = overlay("envoy", ca=CA_PEM)
    ov["spec"]["meshConfig"]["pathNormalization"] = {"normalization": "MERGE_SLASHES"}
    return install_objects(ov, VERSION)


# --- golden folder ---------------------------------------------------------------------------------


def test_missing_golden_folder_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(golden.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(golden.GoldenMissing) as caught:
        golden.golden_dir()
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and golden.ENV_VAR in message


# --- install objects -------------------------------------------------------------------------------


def test_crds_the_suite_uses_with_istios_names_versions_and_scope() -> None:
    crds = {c["metadata"]["name"]: c for c in istio_crds()}
    assert set(crds) == {
        "requestauthentications.security.istio.io",
        "authorizationpolicies.security.istio.io",
        "peerauthentications.security.istio.io",
        "serviceentries.networking.istio.io",
        "destinationrules.networking.istio.io",
        "gateways.networking.istio.io",
        "virtualservices.networking.istio.io",
        "sidecars.networking.istio.io",
    }
    for name, crd in crds.items():
        spec = crd["spec"]
        assert name == f"{spec['names']['plural']}.{spec['group']}" and spec["scope"] == "Namespaced"
        versions = [v["name"] for v in spec["versions"]]
        want = ["v1", "v1alpha3", "v1beta1"] if spec["group"] == "networking.istio.io" else ["v1", "v1beta1"]
        assert versions == want and all(v["served"] for v in spec["versions"])
        assert [v["name"] for v in spec["versions"] if v["storage"]] == ["v1"]
        for v in spec["versions"]:
            props = v["schema"]["openAPIV3Schema"]["properties"]
            assert props["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    assert crds["requestauthentications.security.istio.io"]["spec"]["names"]["shortNames"] == ["ra"]


def test_apply_order_namespace_crds_control_plane_gateway(installed: list[dict[str, Any]]) -> None:
    kinds = [o["kind"] for o in installed]
    assert kinds[0] == "Namespace" and kinds[1:9] == ["CustomResourceDefinition"] * 8
    assert installed[0]["metadata"] == {"name": "istio-system"}
    assert kinds.index("Deployment") < kinds.index("Service")  # istiod before its Service, gateway last
    assert installed[-1]["kind"] == "Service" and installed[-1]["metadata"]["name"] == "istio-ingressgateway"
    assert "HorizontalPodAutoscaler" not in kinds  # demo: autoscaleEnabled false
    names = {(o["kind"], o["metadata"]["name"]) for o in installed}
    for wanted in [
        ("ServiceAccount", "istiod"),
        ("ConfigMap", "istio"),
        ("ConfigMap", "istio-sidecar-injector"),
        ("MutatingWebhookConfiguration", "istio-sidecar-injector"),
        ("ValidatingWebhookConfiguration", "istio-validator-istio-system"),
        ("ClusterRole", "istiod-clusterrole-istio-system"),
        ("RoleBinding", "istiod"),
        ("Service", "istiod"),
        ("Deployment", "istio-ingressgateway"),
        ("Role", "istio-ingressgateway-sds"),
        ("RoleBinding", "istio-ingressgateway-sds"),
    ]:
        assert wanted in names
    assert not any("egress" in o["metadata"]["name"] for o in installed)


def test_istiod_carries_the_goldens_env_plus_the_overlays(installed: list[dict[str, Any]]) -> None:
    gold = by_kind(golden.load_all("install/pilot_default.golden.yaml"), "Deployment", "istiod")
    istiod = by_kind(installed, "Deployment", "istiod")
    discovery = container(istiod, "discovery")
    golden_names = [e["name"] for e in container(gold, "discovery")["env"]]
    names = [e["name"] for e in discovery["env"]]
    assert [n for n in names if n in golden_names] == golden_names  # all of the golden's, in its order
    assert set(names) - set(golden_names) == {"PILOT_JWT_ENABLE_REMOTE_JWKS", "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"}
    env = env_of(discovery)
    assert env["PILOT_JWT_ENABLE_REMOTE_JWKS"] == "envoy" and env["PILOT_TRACE_SAMPLING"] == "100"
    assert names.index("PILOT_JWT_ENABLE_REMOTE_JWKS") == names.index("CA_TRUSTED_NODE_ACCOUNTS") + 1
    assert discovery["image"] == f"docker.io/istio/pilot:{VERSION}"
    assert discovery["args"] == container(gold, "discovery")["args"]
    assert [p["containerPort"] for p in discovery["ports"]] == [8080, 15010, 15012, 15017, 15014]
    assert istiod["spec"]["replicas"] == 1 and discovery["resources"] == {"requests": {"cpu": "10m", "memory": "100Mi"}}
    assert istiod["metadata"]["labels"]["app.kubernetes.io/version"] == VERSION


def test_extra_root_ca_goes_where_the_chart_puts_it_and_reads_back(installed: list[dict[str, Any]]) -> None:
    cm = by_kind(installed, "ConfigMap", "pilot-jwks-extra-cacerts")
    assert cm["data"] == {"extra.pem": CA_PEM}
    istiod = by_kind(installed, "Deployment", "istiod")
    mounts = {m["mountPath"]: m["name"] for m in container(istiod, "discovery")["volumeMounts"]}
    volumes = {v["name"]: v for v in istiod["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/cacerts"]]["configMap"]["name"] == "pilot-jwks-extra-cacerts"
    configmaps = [o for o in installed if o["kind"] == "ConfigMap"]
    settings = istiod_settings(istiod, configmaps)
    assert settings.extra_root_ca == CA_PEM and settings.extra_root_ca_configmap == "pilot-jwks-extra-cacerts"
    assert settings.version == VERSION and settings.hub == "docker.io/istio" and settings.revision == ""
    assert settings.jwks_fetch_mode_env == "envoy" and settings.jwks_fetch_mode == "envoy"
    assert settings.path_normalization == "MERGE_SLASHES"
    assert settings.proxy_requests == {"cpu": "10m", "memory": "40Mi"}  # demo's sidecar requests
    assert istiod_settings(istiod).extra_root_ca is None  # no ConfigMaps given: nothing read


def test_mesh_config_merges_chart_profile_and_overlay(installed: list[dict[str, Any]]) -> None:
    mesh = yaml.safe_load(by_kind(installed, "ConfigMap", "istio")["data"]["mesh"])
    assert mesh["pathNormalization"] == {"normalization": "MERGE_SLASHES"}
    assert mesh["accessLogFile"] == "/dev/stdout" and mesh["rootNamespace"] == "istio-system"
    assert mesh["defaultConfig"]["discoveryAddress"] == "istiod.istio-system.svc:15012"
    assert mesh["trustDomain"] == "cluster.local" and mesh["enablePrometheusMerge"] is True
    assert {p["name"] for p in mesh["extensionProviders"]} == {"otel", "skywalking", "otel-tracing", "jaeger"}


@pytest.mark.parametrize("mode", sorted(plans.REMOTE_JWKS_ENV))
def test_fetch_mode_round_trips_through_the_deployment(helm: None, mode: str) -> None:
    from rehearsal.istio.install import install_objects

    objects = install_objects(overlay(mode), VERSION)
    settings = istiod_settings(
        by_kind(objects, "Deployment", "istiod"), [o for o in objects if o["kind"] == "ConfigMap"]
    )
    assert settings.jwks_fetch_mode == mode and settings.extra_root_ca is None
    assert not any(o["metadata"]["name"] == "pilot-jwks-extra-cacerts" for o in objects)
    mounts = [m["mountPath"] for m in container(by_kind(objects, "Deployment", "istiod"), "discovery")["volumeMounts"]]
    assert "/cacerts" not in mounts


def test_revision_names_labels_and_webhooks(helm: None) -> None:
    from rehearsal.istio.install import install_objects

    objects = install_objects(overlay("istiod", revision="canary", ca=CA_PEM), VERSION)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for wanted in [
        ("Deployment", "istiod-canary"),
        ("Service", "istiod-canary"),
        ("ServiceAccount", "istiod-canary"),
        ("ConfigMap", "istio-canary"),
        ("ConfigMap", "istio-sidecar-injector-canary"),
        ("ConfigMap", "pilot-jwks-extra-cacerts-canary"),
        ("MutatingWebhookConfiguration", "istio-sidecar-injector-canary"),
        ("ClusterRole", "istiod-clusterrole-canary-istio-system"),
    ]:
        assert wanted in names
    istiod = by_kind(objects, "Deployment", "istiod-canary")
    assert istiod["metadata"]["labels"]["istio.io/rev"] == "canary"
    assert istiod["spec"]["selector"]["matchLabels"] == {"app": "istiod", "istio.io/rev": "canary"}
    webhook = by_kind(objects, "MutatingWebhookConfiguration")
    assert [w["name"] for w in webhook["webhooks"]] == [
        "rev.namespace.sidecar-injector.istio.io",
        "rev.object.sidecar-injector.istio.io",
    ]
    assert all(w["clientConfig"]["service"]["name"] == "istiod-canary" for w in webhook["webhooks"])
    assert "'default'" not in json.dumps(webhook) and '["default"]' not in json.dumps(webhook)
    binding = by_kind(objects, "ClusterRoleBinding", "istiod-clusterrole-canary-istio-system")
    assert binding["roleRef"]["name"] == "istiod-clusterrole-canary-istio-system"
    assert binding["subjects"][0]["name"] == "istiod-canary"
    settings = istiod_settings(istiod, [o for o in objects if o["kind"] == "ConfigMap"])
    assert settings.revision == "canary" and settings.extra_root_ca == CA_PEM
    assert settings.mesh_config["defaultConfig"]["discoveryAddress"] == "istiod-canary.istio-system.svc:15012"


def test_gateway_rendered_from_istios_template(installed: list[dict[str, Any]]) -> None:
    gateway = by_kind(installed, "Deployment", "istio-ingressgateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "istio-ingressgateway" and labels["istio"] == "ingressgateway"
    assert gateway["spec"]["selector"]["matchLabels"] == {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    (proxy,) = gateway["spec"]["template"]["spec"]["containers"]
    assert proxy["name"] == "istio-proxy" and proxy["image"] == f"docker.io/istio/proxyv2:{VERSION}"
    assert proxy["args"][:2] == ["proxy", "router"]
    assert [p["containerPort"] for p in proxy["ports"]] == [15021, 8080, 8443, 15090]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}
    assert env_of(proxy)["CA_ADDR"] == "istiod.istio-system.svc:15012"
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == "istio-ingressgateway-service-account"
    assert ("ServiceAccount", "istio-ingressgateway-service-account") in {
        (o["kind"], o["metadata"]["name"]) for o in installed
    }
    service = by_kind(installed, "Service", "istio-ingressgateway")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    node_ports = {p["name"]: p.get("nodePort") for p in service["spec"]["ports"]}
    assert node_ports == {"status-port": None, "http2": plans.INGRESS_NODE_PORTS["http"], "https": 31443}


def test_gateway_without_k8s_service_gets_the_demo_ports_and_a_load_balancer(helm: None) -> None:
    from rehearsal.istio.install import install_objects

    objects = install_objects(plans.istio_operator("istiod", node_ports=False, image_registry="mirror.test"), VERSION)
    service = by_kind(objects, "Service", "istio-ingressgateway")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in service["spec"]["ports"]] == [15021, 80, 443, 31400, 15443]
    for name in ("istiod", "istio-ingressgateway"):
        image = by_kind(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith("mirror.test/istio/") and image.endswith(f":{VERSION}")


def test_what_is_not_simulated_is_refused() -> None:
    demo = {"kind": "IstioOperator", "spec": {"profile": "demo"}}
    with pytest.raises(NotSimulated, match="egress"):
        resolve(demo, VERSION)  # demo enables the egress gateway unless the overlay disables it
    with pytest.raises(NotSimulated, match="profile 'ambient'"):
        resolve({"kind": "IstioOperator", "spec": {"profile": "ambient"}}, VERSION)
    vals = resolve(overlay(), VERSION)
    assert vals.profile == "demo" and vals.tag == VERSION and [g.name for g in vals.ingress] == ["istio-ingressgateway"]


# --- injection -------------------------------------------------------------------------------------

NS_ENABLED = {"metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}}


def golden_pair(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    source = golden.load_all(f"inject/{name}.yaml")[0]
    injected = golden.load_all(f"inject/{name}.yaml.injected")[0]
    return source, injected


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod (template) of a Deployment or Pod: metadata and spec (``status: {}`` is serialization)."""
    pod = obj["spec"]["template"] if "template" in obj.get("spec", {}) else obj
    return {"metadata": pod["metadata"], "spec": pod["spec"]}


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Paths where two pods differ; lists of named items are compared by name, in order."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(got) | set(want)):
            if key not in got:
                out.append(f"{path}/{key}: missing")
            elif key not in want:
                out.append(f"{path}/{key}: not in the golden")
            else:
                out += differences(got[key], want[key], f"{path}/{key}")
        return out
    if isinstance(got, list) and isinstance(want, list):
        named = all(isinstance(i, dict) and "name" in i for i in got + want)
        if named and [i["name"] for i in got] != [i["name"] for i in want]:
            return [f"{path}: names {[i['name'] for i in got]} != {[i['name'] for i in want]}"]
        if len(got) != len(want):
            return [f"{path}: {len(got)} items != {len(want)}"]
        return [d for i, (a, b) in enumerate(zip(got, want, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


@pytest.mark.parametrize("name", ["hello", "native-sidecar", "gateway"])
def test_injection_matches_istios_injector_field_by_field(golden_root: Path, name: str) -> None:
    source, want = golden_pair(name)
    # the golden run: hub registry.istio.io/testing, tag latest, native sidecars on
    got = inject(source, NS_ENABLED, version="latest", hub="registry.istio.io/testing", native=True)
    problems = differences(pod_of(got), pod_of(want))
    assert not problems, f"{name}: injected pod differs from Istio's:\n" + "\n".join(problems)


def test_native_and_classic_forms(golden_root: Path) -> None:
    source, _ = golden_pair("hello")
    native = pod_of(inject(source, NS_ENABLED, version=VERSION))["spec"]
    assert [c["name"] for c in native["initContainers"]] == ["istio-init", "istio-proxy"]
    assert native["initContainers"][1]["restartPolicy"] == "Always"
    assert [c["name"] for c in native["containers"]] == ["hello"]
    classic_pod = pod_of(inject(source, NS_ENABLED, version="1.26.8"))
    classic = classic_pod["spec"]
    assert [c["name"] for c in classic["initContainers"]] == ["istio-init"]
    assert [c["name"] for c in classic["containers"]] == ["hello", "istio-proxy"]
    assert "restartPolicy" not in classic["containers"][1]
    status = json.loads(classic_pod["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert status["initContainers"] == ["istio-init"] and status["containers"] == ["istio-proxy"]
    images = {c["image"] for c in [*classic["initContainers"], classic["containers"][1]]}
    assert images == {"docker.io/istio/proxyv2:1.26.8"}


def test_injector_requests_from_the_installed_configmap(installed: list[dict[str, Any]]) -> None:
    settings = istiod_settings(
        by_kind(installed, "Deployment", "istiod"), [o for o in installed if o["kind"] == "ConfigMap"]
    )
    source, _ = golden_pair("hello")
    got = pod_of(inject(source, NS_ENABLED, version=settings.version, proxy_requests=settings.proxy_requests))
    for c in got["spec"]["initContainers"]:
        assert c["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}}


def test_native_sidecars_default_by_istio_and_kubelet_version() -> None:
    assert not native_sidecars_default("1.26.8")
    assert native_sidecars_default("1.27.0") and native_sidecars_default("1.30.3")
    assert not native_sidecars_default("1.29.2", kubelet_minor=32)
    assert native_sidecars_default("latest")  # a development build: today's default


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "foo"}, "spec": {"containers": []}}


def pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(POD)
    out["metadata"].update(labels=labels or {}, annotations=annotations or {})
    out["spec"]["containers"] = [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]}]
    return out


def ns(name: str = "foo", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {k.replace("_", "-"): v for k, v in labels.items()}}}


@pytest.mark.parametrize(
    ("namespace", "pod_labels", "revision", "expected"),
    [
        (ns(istio_injection="enabled"), {}, None, True),
        (ns(istio_injection="disabled"), {}, None, False),
        (ns(), {}, None, False),
        (ns(istio_injection="enabled"), {"sidecar.istio.io/inject": "false"}, None, False),
        (ns("kube-system", istio_injection="enabled"), {}, None, False),
        (ns(**{"istio.io/rev": "canary"}), {}, "canary", True),
        (ns(**{"istio.io/rev": "canary"}), {}, None, False),
        (ns(istio_injection="enabled"), {}, "canary", False),  # that label belongs to the default revision
        (ns(), {"istio.io/rev": "canary"}, "canary", True),
        (ns(), {"sidecar.istio.io/inject": "true"}, None, True),
    ],
)
def test_which_pods_the_webhooks_select(
    namespace: dict[str, Any], pod_labels: dict[str, str], revision: str | None, expected: bool
) -> None:
    assert selected(pod(pod_labels), namespace, revision) is expected


def test_injection_policy_and_idempotence(golden_root: Path) -> None:
    plain = pod()
    assert inject(plain, ns(), version=VERSION) == plain  # not selected: unchanged
    opted_out = pod(annotations={"sidecar.istio.io/inject": "false"})
    assert inject(opted_out, ns(istio_injection="enabled"), version=VERSION) == opted_out
    once = inject(plain, ns(istio_injection="enabled"), version=VERSION, revision=None)
    assert inject(once, ns(istio_injection="enabled"), version=VERSION) == once
    own_proxy = pod()
    own_proxy["spec"]["containers"].append({"name": "istio-proxy", "image": "mine"})
    assert inject(own_proxy, ns(istio_injection="enabled"), version=VERSION) == own_proxy
    annotations = once["metadata"]["annotations"]
    assert json.loads(annotations["sidecar.istio.io/status"])["initContainers"] == ["istio-init", "istio-proxy"]
    assert annotations["istio.io/rev"] == "default"


def test_injected_proxy_follows_revision_hub_and_owner(golden_root: Path) -> None:
    rs_pod = pod({"app": "httpbin", "version": "v1", "pod-template-hash": "5f7c"})
    rs_pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "httpbin-5f7c", "apiVersion": "apps/v1"}]
    rs_pod["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/status/200", "port": 80}}
    got = inject(rs_pod, ns(**{"istio.io/rev": "canary"}), version=VERSION, revision="canary", hub="mirror.test/istio")
    proxy = next(c for c in got["spec"]["initContainers"] if c["name"] == "istio-proxy")
    env = env_of(proxy)
    assert proxy["image"] == f"mirror.test/istio/proxyv2:{VERSION}"
    assert env["CA_ADDR"] == "istiod-canary.istio-system.svc:15012"
    assert env["ISTIO_META_WORKLOAD_NAME"] == "httpbin"
    assert env["ISTIO_META_OWNER"] == "kubernetes://apis/apps/v1/namespaces/foo/deployments/httpbin"
    assert env["ISTIO_META_APP_CONTAINERS"] == "app"
    assert json.loads(env["ISTIO_META_POD_PORTS"]) == [{"containerPort": 80}]
    assert json.loads(env["ISTIO_KUBE_APP_PROBERS"]) == {
        "/app-health/app/readyz": {"httpGet": {"path": "/status/200", "port": 80}}
    }
    assert got["spec"]["containers"][0]["readinessProbe"]["httpGet"] == {
        "path": "/app-health/app/readyz",
        "port": 15020,
    }
    labels = got["metadata"]["labels"]
    assert labels["service.istio.io/canonical-name"] == "httpbin"
    assert labels["service.istio.io/canonical-revision"] == "v1"
    assert json.loads(got["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"] == "canary"


# --- the istioctl stand-in ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick_readiness_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in polls Deployments every 0.5 s like istioctl; the tests need not wait that long."""
    monkeypatch.setattr(istioctl, "POLL_INTERVAL", 0.02)


def run_cli(*argv: str, version: str | None = VERSION) -> tuple[int, list[str]]:
    lines: list[str] = []
    args = (["--istio-version", version] if version else []) + list(argv)
    return istioctl.main(args, out=lines.append), lines


@pytest.mark.parametrize(
    "argv", [["upgrade", "-y"], ["analyze"], ["install", "--bogus"], ["version", "-o", "table"], []]
)
def test_cli_refuses_what_it_does_not_simulate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_cli(*argv)
    err = capsys.readouterr().err
    assert code == 2 and not lines
    assert err.count("\n") == 1 and err.startswith("not simulated:")


def test_cli_bad_input_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    for argv, needle in [
        (["install", "-y", "-f", str(missing)], f"open {missing}: no such file or directory"),
        (["install", "-y", "--readiness-timeout", "ten", "-f", str(missing)], 'invalid duration "ten"'),
    ]:
        code, lines = run_cli(*argv)
        err = capsys.readouterr().err
        assert code == 1 and not lines and err.count("\n") == 1 and needle in err, err
    not_iop = tmp_path / "not-iop.yaml"
    not_iop.write_text("kind: ConfigMap\n")
    assert run_cli("install", "-y", "-f", str(not_iop))[0] == 1
    assert "not an IstioOperator" in capsys.readouterr().err


def test_cli_needs_a_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(istioctl.VERSION_ENV, raising=False)
    assert run_cli("version", "--short", version=None) == (1, [])
    assert istioctl.VERSION_ENV in capsys.readouterr().err
    monkeypatch.setenv(istioctl.VERSION_ENV, "1.28.5")
    assert run_cli("version", "--remote=false", "--short", version=None) == (0, ["client version: 1.28.5"])
    assert run_cli("version", "--remote=false", "--short") == (0, [f"client version: {VERSION}"])  # baked flag wins


def test_cli_version_json_like_istioctl() -> None:
    code, lines = run_cli("version", "-o", "json")
    assert code == 0
    doc = json.loads(lines[0])
    assert doc == {
        "clientVersion": {
            "version": VERSION,
            "revision": "rehearsal",
            "golang_version": "",
            "status": "Clean",
            "tag": VERSION,
        }
    }
    assert run_cli("version", "--remote=false")[1][0].startswith('client version: version.BuildInfo{Version:"1.29.2"')


def test_cli_refuses_an_overlay_it_cannot_reproduce(golden_root: Path, tmp_path: Path, capsys) -> None:
    demo = tmp_path / "demo.yaml"
    demo.write_text(yaml.safe_dump({"kind": "IstioOperator", "spec": {"profile": "demo"}}))
    assert run_cli("install", "-y", "-f", str(demo), "--kubeconfig", str(tmp_path / "none")) == (1, [])
    assert "not simulated: an enabled egress gateway" in capsys.readouterr().err


def test_set_paths_land_under_spec(tmp_path: Path) -> None:
    file = tmp_path / "ov.yaml"
    file.write_text(yaml.safe_dump(overlay("istiod")))
    merged = istioctl.load_overlay(
        [str(file)], ["values.pilot.env.PILOT_JWT_ENABLE_REMOTE_JWKS=envoy", "meshConfig.accessLogFile="]
    )
    assert merged["spec"]["values"]["pilot"]["env"]["PILOT_JWT_ENABLE_REMOTE_JWKS"] == "envoy"
    assert merged["spec"]["meshConfig"]["accessLogFile"] == "" and merged["spec"]["profile"] == "demo"


def test_readiness_follows_rollout_status_rules() -> None:
    ready = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    assert istioctl.deployment_ready(ready)
    for key, value in [("observedGeneration", 1), ("availableReplicas", 0), ("updatedReplicas", 0)]:
        stale = copy.deepcopy(ready)
        stale["status"][key] = value
        assert not istioctl.deployment_ready(stale), key
    assert not istioctl.deployment_ready(None)
    started = time.monotonic()
    with pytest.raises(istioctl.Failure, match="timed out waiting for Deployment istio-system/istiod"):
        istioctl.wait_ready(lambda: None, "istio-system/istiod", time.monotonic() + 0.2)
    assert time.monotonic() - started < 2


def test_cli_installs_through_a_kube_api_and_waits_for_readiness(golden_root: Path, helm: None, tmp_path: Path) -> None:
    file = tmp_path / "overlay.yaml"
    file.write_text(yaml.safe_dump(overlay("envoy", ca=CA_PEM)))
    with StubApi(ready_after=2) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        argv = ["install", "-y", "-f", str(file), "--kubeconfig", kubeconfig, "--readiness-timeout", "30s"]
        code, lines = run_cli(*argv)
        assert code == 0, lines
        assert lines == [
            "✔ Istio core installed ⛵️",
            "✔ Istiod installed 🧠",
            "✔ Ingress gateways installed 🛬",
            "✔ Installation complete",
        ]
        first_crd = api.requests.index(("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"))
        first_deploy = api.requests.index(("POST", "/apis/apps/v1/namespaces/istio-system/deployments"))
        assert first_crd < first_deploy
        istiod = api.get("Deployment", "istiod", "istio-system")
        assert istiod is not None
        configmaps = [o for o in api.objects.values() if o["kind"] == "ConfigMap"]
        settings = istiod_settings(istiod, configmaps)
        assert (settings.version, settings.jwks_fetch_mode, settings.extra_root_ca) == (VERSION, "envoy", CA_PEM)
        # again: everything exists, so it is patched in place, not created
        posts = sum(1 for m, _ in api.requests if m == "POST")
        assert run_cli(*argv)[0] == 0
        assert sum(1 for m, _ in api.requests if m == "PATCH") == len(api.objects) - 1  # not the namespace
        assert sum(1 for m, _ in api.requests if m == "POST") == posts
        code, lines = run_cli("version", "--remote", "--short", "--kubeconfig", kubeconfig)
        assert (code, lines) == (0, [f"client version: {VERSION}", f"control plane version: {VERSION}"])


def test_cli_times_out_with_one_line(golden_root: Path, helm: None, tmp_path: Path, capsys) -> None:
    file = tmp_path / "overlay.yaml"
    file.write_text(yaml.safe_dump(overlay("istiod")))
    with StubApi(ready_after=None) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        started = time.monotonic()
        code, lines = run_cli("install", "-y", "-f", str(file), "--kubeconfig", kubeconfig,
                              "--readiness-timeout", "300ms")  # fmt: skip
        assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert code == 1 and lines == ["✔ Istio core installed ⛵️"]
    assert err == "Error: timed out waiting for Deployment istio-system/istiod to be ready\n"


def test_cli_refused_object_is_named_in_one_line(golden_root: Path, helm: None, tmp_path: Path, capsys) -> None:
    file = tmp_path / "overlay.yaml"
    file.write_text(yaml.safe_dump(overlay("istiod")))
    with StubApi(forbid=frozenset({"deployments"})) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        code, lines = run_cli("install", "-y", "-f", str(file), "--kubeconfig", kubeconfig)
    err = capsys.readouterr().err
    assert code == 1 and lines == ["✔ Istio core installed ⛵️"]
    assert err.startswith("Error: failed to apply Deployment istio-system/istiod: 403") and err.count("\n") == 1, err


def test_cli_unreachable_api_is_one_line(golden_root: Path, helm: None, tmp_path: Path, capsys) -> None:
    file = tmp_path / "overlay.yaml"
    file.write_text(yaml.safe_dump(overlay("istiod")))
    api = StubApi()  # never started: its port is bound but nobody answers... so close it first
    kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
    api.server.server_close()
    started = time.monotonic()
    code, _ = run_cli("install", "-y", "-f", str(file), "--kubeconfig", kubeconfig, "--readiness-timeout", "5s")
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("Error: failed to install Istio:") and err.count("\n") == 1, err
    assert time.monotonic() - started < 30


@pytest.mark.integration
def test_cli_module_entry_point(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rehearsal.tools.istioctl", "--istio-version", VERSION, "proxy-status"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2 and done.stderr == "not simulated: proxy-status\n" and not done.stdout


@pytest.mark.integration
def test_wrapper_executable_for_istioctl_path(tmp_path: Path) -> None:
    baked = istioctl.write_wrapper(tmp_path / "istioctl", "1.27.8")
    env = {k: v for k, v in os.environ.items() if k != istioctl.VERSION_ENV}
    run = subprocess.run([str(baked), "version", "--short"], capture_output=True, text=True, timeout=60, env=env)
    assert (run.returncode, run.stdout) == (0, "client version: 1.27.8\n")
    pinned = istioctl.write_wrapper(tmp_path / "istioctl-env")
    env[istioctl.VERSION_ENV] = "1.30.3"
    run = subprocess.run([str(pinned), "version", "--short"], capture_output=True, text=True, timeout=60, env=env)
    assert (run.returncode, run.stdout) == (0, "client version: 1.30.3\n")
