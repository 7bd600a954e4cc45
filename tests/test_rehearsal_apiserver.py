"""The Kubernetes API stand-in (rehearsal/apiserver), driven by the real kubectl 1.32 and the kubernetes client."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

aiohttp = pytest.importorskip("aiohttp", reason="the rehearsal extra (aiohttp) is not installed")

from meshjwt.kube import readiness, workloads  # noqa: E402
from meshjwt.kube.kubectl import Kubectl, ResourceRef  # noqa: E402
from rehearsal.apiserver import ApiServer, ExecRequest, ExecResult, Tenant, rbac  # noqa: E402
from rehearsal.apiserver import patch as patches  # noqa: E402

GCLOUD_KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
#: how long any polled condition may take (generous: 2 shared cores)
WAIT = 15.0


def _client_minor(binary: str) -> int:
    try:
        done = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True, text=True,
                              timeout=20)
        return int(json.loads(done.stdout)["clientVersion"]["minor"].rstrip("+"))
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return 0


def find_kubectl() -> str | None:
    """kubectl 1.32: $MESHJWT_REHEARSAL_KUBECTL, kubectl.1.32 on PATH, the image's gcloud copy, or a kubectl
    1.30–1.33 on PATH (exec over WebSocket needs 1.30)."""
    for candidate in (os.environ.get("MESHJWT_REHEARSAL_KUBECTL"), shutil.which("kubectl.1.32"), GCLOUD_KUBECTL):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    plain = shutil.which("kubectl")
    return plain if plain and 30 <= _client_minor(plain) <= 33 else None


KUBECTL = find_kubectl()
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="no kubectl 1.30-1.33 found (set MESHJWT_REHEARSAL_KUBECTL to a kubectl 1.32)"
)


def poll(check: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.02) -> Any:
    """Return check()'s first truthy value; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s (last: {value!r})")
        time.sleep(interval)


@dataclass
class Kube:
    """kubectl against one server, with its own kubeconfig and discovery cache."""

    server: ApiServer
    kubeconfig: Path
    cache: Path

    def __call__(self, *args: str, input: str | bytes | None = None, check: bool = True,
                 text: bool = True) -> subprocess.CompletedProcess[Any]:
        env = {**os.environ, "KUBECACHEDIR": str(self.cache), "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=text, env=env,
                              timeout=60)
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr!s}")
        return done

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(self, *docs: dict[str, Any], extra: tuple[str, ...] = ()) -> str:
        return self("apply", *extra, "-f", "-", input=yaml.safe_dump_all(docs)).stdout


def kube_for(server: ApiServer, tmp: Path, token: str | None = None) -> Kube:
    tmp.mkdir(parents=True, exist_ok=True)
    return Kube(server, server.kubeconfig(tmp / "kubeconfig", token=token), tmp / "cache")


# --- a workload mesh-like: the injector adds a native sidecar and a classic init container --------------
def inject(pod: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    """Add istio-init (classic) and istio-proxy (native sidecar) in namespaces labelled for injection."""
    if (namespace.get("metadata", {}).get("labels") or {}).get("istio-injection") == "enabled":
        pod["spec"]["initContainers"] = [
            {"name": "istio-init", "image": "proxyv2"},
            {"name": "istio-proxy", "image": "proxyv2", "restartPolicy": "Always"},
        ]
    INJECTED.append(pod["metadata"]["name"])
    return pod


INJECTED: list[str] = []


def run_command(request: ExecRequest) -> ExecResult:
    """What the tests exec: echo, cat (stdin back), exit N, whoami (namespace/pod/container)."""
    command = request.command
    if command[0] == "echo":
        return ExecResult((" ".join(command[1:]) + "\n").encode())
    if command[0] == "cat":
        return ExecResult(request.stdin or b"")
    if command[0] == "exit":
        return ExecResult(b"out\n", b"failing on purpose\n", int(command[1]))
    if command[0] == "whoami":
        return ExecResult(f"{request.namespace}/{request.pod['metadata']['name']}/{request.container}".encode())
    if command[0] == "len":
        return ExecResult(str(sum(len(a) for a in command[1:])).encode())
    return ExecResult(b"", f"{command[0]}: not found\n".encode(), 127)


def pod_logs(pod: dict[str, Any], container: str) -> str:
    return "".join(f"{container} line {i}\n" for i in range(1, 6))


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    api = ApiServer(name="test", pod_ready_delay=0.05, namespace_finalize_delay=0.3,
                    node=("meshjwt-control-plane", {"meshjwt.io/config-hash": "abc"}),
                    injector=inject, exec_handler=run_command, log_handler=pod_logs)
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def kube(server: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Kube:
    return kube_for(server, tmp_path_factory.mktemp("kube"))


def namespace(name: str, inject: bool = False) -> dict[str, Any]:
    labels = {"istio-injection": "enabled"} if inject else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def deployment(name: str, ns: str, image: str = "curl", replicas: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name, **labels}},
                              "spec": {"containers": [{"name": name, "image": image,
                                                       "env": [{"name": "A", "value": "1"}]}]}}},
    }


def configmap(name: str, ns: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "requestauthentications.security.istio.io"},
    "spec": {"group": "security.istio.io", "scope": "Namespaced",
             "names": {"kind": "RequestAuthentication", "plural": "requestauthentications",
                       "singular": "requestauthentication", "listKind": "RequestAuthenticationList",
                       "shortNames": ["ra"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}},
                          {"name": "v1beta1", "served": True, "storage": False,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def request_authentication(name: str, ns: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "jwtRules": rules}}


# --- discovery, version, OpenAPI ------------------------------------------------------------------------
@pytest.mark.integration
def test_version_discovery_and_openapi(server: ApiServer, kube: Kube) -> None:
    version = kube.json("version")
    assert version["serverVersion"]["minor"] == "32" and version["serverVersion"]["gitVersion"] == "v1.32.4"
    names = kube("api-resources", "-o", "name").stdout.split()
    for wanted in ("pods", "namespaces", "deployments.apps", "replicasets.apps", "customresourcedefinitions."
                   "apiextensions.k8s.io", "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                   "clusterroles.rbac.authorization.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io"):
        assert wanted in names
    with pytest.raises(urllib.error.HTTPError) as v2:
        urllib.request.urlopen(f"{server.url}/openapi/v2", timeout=5)
    assert v2.value.code == 404
    index = json.load(urllib.request.urlopen(f"{server.url}/openapi/v3", timeout=5))
    assert "apis/apps/v1" in index["paths"]
    nodes = kube.json("get", "nodes")["items"]
    assert [n["metadata"]["labels"]["meshjwt.io/config-hash"] for n in nodes] == ["abc"]
    kube("wait", "--for=condition=Ready", "node", "--all", "--timeout=10s")


@pytest.mark.integration
def test_crd_adds_its_kind_and_is_served_with_merge_patch(server: ApiServer, kube: Kube) -> None:
    kube.apply(namespace("crd-ns"))
    missing = kube("get", "requestauthentications", "-A", check=False)
    assert missing.returncode != 0 and "doesn't have a resource type" in missing.stderr
    kube.apply(CRD)
    assert kube("get", "crd", CRD["metadata"]["name"], "-o", "name").stdout.strip() == (
        "customresourcedefinition.apiextensions.k8s.io/requestauthentications.security.istio.io")
    kube("wait", "--for=condition=established", f"crd/{CRD['metadata']['name']}", "--timeout=10s")
    rules = [{"issuer": "a", "jwksUri": "http://x/jwks"}, {"issuer": "b", "jwks": "{}"}]
    assert "created" in kube.apply(request_authentication("jwt", "crd-ns", rules))
    first = kube.json("get", "ra", "jwt", "-n", "crd-ns")
    assert first["metadata"]["generation"] == 1
    # a CRD object updates by JSON merge patch: the list is replaced, a removed field disappears
    assert "configured" in kube.apply(request_authentication("jwt", "crd-ns", rules[:1]))
    second = kube.json("get", "requestauthentications.security.istio.io", "jwt", "-n", "crd-ns")
    assert second["spec"]["jwtRules"] == rules[:1] and second["metadata"]["generation"] == 2
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert "unchanged" in kube.apply(request_authentication("jwt", "crd-ns", rules[:1]))
    served = kube.json("get", "requestauthentications.v1beta1.security.istio.io", "jwt", "-n", "crd-ns")
    assert served["apiVersion"] == "security.istio.io/v1beta1"
    listed = kube("get", "ra", "-A", "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert listed == "jwt"
    kube("delete", "-f", "-", input=yaml.safe_dump(request_authentication("jwt", "crd-ns", rules)))
    assert kube("get", "ra", "-n", "crd-ns", "-o", "name").stdout == ""
    kube.apply(request_authentication("again", "crd-ns", rules))
    kube("delete", "crd", CRD["metadata"]["name"])  # its objects go with it, its kind leaves discovery
    assert server.store.list("requestauthentications.security.istio.io") == []
    assert "requestauthentications.security.istio.io" not in kube("api-resources", "-o", "name").stdout.split()


# --- apply, generation, errors ------------------------------------------------------------------------
@pytest.mark.integration
def test_apply_create_update_noop_and_generation(server: ApiServer, kube: Kube) -> None:
    ns = "apply-ns"
    out = kube.apply(namespace(ns), configmap("cm", ns, a="1"), deployment("web", ns))
    assert out.split("\n")[:3] == ["namespace/apply-ns created", "configmap/cm created",
                                   "deployment.apps/web created"]
    dep = kube.json("get", "deployment", "web", "-n", ns)
    meta = dep["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
    poll(lambda: readiness.deployment_rolled_out(kube.json("get", "deployment", "web", "-n", ns))[0], "rollout")
    rolled = kube.json("get", "deployment", "web", "-n", ns)  # status changes: new resourceVersions, same generation
    assert rolled["metadata"]["generation"] == 1 and int(rolled["metadata"]["resourceVersion"]) > int(
        server.store.get("namespaces", None, ns)["metadata"]["resourceVersion"]) + 2
    # no change: kubectl sends nothing, the resourceVersion stays
    cm_meta = kube.json("get", "configmap", "cm", "-n", ns)["metadata"]
    before = cm_meta["resourceVersion"]
    assert "generation" not in cm_meta  # as on a real server: only kinds with a spec contract have one
    assert "configmap/cm unchanged" in kube.apply(configmap("cm", ns, a="1"))
    assert kube.json("get", "configmap", "cm", "-n", ns)["metadata"]["resourceVersion"] == before
    # metadata-only change: no generation bump; spec change: bump
    labelled = deployment("web", ns)
    labelled["metadata"]["labels"] = {"tier": "front"}
    kube.apply(labelled)
    assert kube.json("get", "deployment", "web", "-n", ns)["metadata"]["generation"] == 1
    dry = kube.apply(deployment("web", ns, image="curl:9"), configmap("new", ns), extra=("--dry-run=server",))
    assert dry.count("(server dry run)") == 2  # computed and answered, never stored
    assert server.store.get("configmaps", ns, "new") is None
    assert kube.json("get", "deployment", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0][
        "image"] == "curl"
    kube.apply(deployment("web", ns, image="curl:2"))
    after = kube.json("get", "deployment", "web", "-n", ns)
    assert after["metadata"]["generation"] == 2 and "labels" not in after["metadata"]  # dropped from the config
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "curl:2"
    assert server.store.get("deployments.apps", ns, "web")["metadata"]["generation"] == 2


@pytest.mark.integration
def test_strategic_merge_patch_from_kubectl_merges_named_items(kube: Kube) -> None:
    ns = "smp-ns"
    kube.apply(namespace(ns), deployment("smp", ns))
    kube("set", "env", "-n", ns, "deployment/smp", "B=2")  # not in the applied config: apply keeps it
    changed = deployment("smp", ns)
    container = changed["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "C", "value": "3"}]
    changed["spec"]["template"]["spec"]["containers"].append({"name": "second", "image": "busybox"})
    kube.apply(changed)
    containers = kube.json("get", "deployment", "smp", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["smp", "second"]
    assert {e["name"]: e["value"] for e in containers[0]["env"]} == {"C": "3", "B": "2"}  # A removed, B kept
    kube("patch", "deployment", "smp", "-n", ns, "--type=json",
         "-p", '[{"op": "replace", "path": "/spec/replicas", "value": 2}]')
    kube("patch", "deployment", "smp", "-n", ns, "--type=merge", "-p", '{"metadata": {"labels": {"x": "y"}}}')
    dep = kube.json("get", "deployment", "smp", "-n", ns)
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["labels"] == {"x": "y"}


def test_strategic_merge_directives() -> None:
    live = {"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                                    {"name": "b", "image": "2"}],
                     "ports": [{"containerPort": 80, "name": "http"}],
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                     "finalizers": ["f1"], "keep": {"x": 1, "y": 2}}}
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
        "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "3"},
                       {"name": "a", "env": [{"name": "Y", "value": "2"}]}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
        "finalizers": ["f2"], "keep": {"$patch": "replace", "z": 3}}}
    out = patches.strategic_merge(live, patch)["spec"]
    assert [c["name"] for c in out["containers"]] == ["c", "a"]
    assert out["containers"][1] == {"name": "a", "image": "1",
                                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
    assert out["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert out["strategy"] == {"type": "Recreate"}
    assert out["finalizers"] == ["f1", "f2"] and out["keep"] == {"z": 3}
    assert patches.strategic_merge({"a": {"b": 1}}, {"a": {"$patch": "delete"}}) == {}
    assert patches.merge_patch({"a": [1, 2], "b": {"c": 1, "d": 2}}, {"a": [3], "b": {"c": None}}) == {
        "a": [3], "b": {"d": 2}}
    doc = patches.json_patch({"a": [1], "b": {"c": 1}}, [
        {"op": "add", "path": "/a/-", "value": 2}, {"op": "remove", "path": "/b/c"},
        {"op": "copy", "from": "/a", "path": "/d"}, {"op": "test", "path": "/d/1", "value": 2}])
    assert doc == {"a": [1, 2], "b": {}, "d": [1, 2]}
    # the three-way patch of server-side apply: what the manager dropped is deleted, named items by key
    three_way = patches.removals({"spec": {"a": 1, "env": [{"name": "X"}, {"name": "Y"}]}},
                                 {"spec": {"env": [{"name": "Y"}]}}, strategic=True)
    assert three_way == {"spec": {"env": [{"name": "Y"}, {"name": "X", "$patch": "delete"}], "a": None}}


@pytest.mark.integration
def test_server_side_apply_creates_and_updates(kube: Kube) -> None:
    ns = "ssa-ns"
    kube.apply(namespace(ns), extra=("--server-side",))
    assert "serverside-applied" in kube.apply(configmap("ssa", ns, a="1", b="2"), extra=("--server-side",))
    assert kube.json("get", "cm", "ssa", "-n", ns)["data"] == {"a": "1", "b": "2"}
    kube.apply(configmap("ssa", ns, a="9"), extra=("--server-side",))
    assert kube.json("get", "cm", "ssa", "-n", ns)["data"] == {"a": "9"}


@pytest.mark.integration
def test_cluster_scoped_and_rbac_kinds(kube: Kube) -> None:
    rbac_v1 = "rbac.authorization.k8s.io/v1"
    docs = [
        {"apiVersion": rbac_v1, "kind": "ClusterRole", "metadata": {"name": "reader"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
        {"apiVersion": rbac_v1, "kind": "ClusterRoleBinding", "metadata": {"name": "reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
         "subjects": [{"kind": "User", "name": "alice"}]},
        {"apiVersion": rbac_v1, "kind": "Role", "metadata": {"name": "r", "namespace": "default"}, "rules": []},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": "istio-sidecar-injector"},
         "webhooks": [{"name": "sidecar-injector.istio.io", "sideEffects": "None",
                       "admissionReviewVersions": ["v1"], "clientConfig": {"url": "https://injector.local/inject"}}]},
    ]
    assert kube.apply(*docs).count("created") == 4
    listed = yaml.safe_load(kube("get", "clusterroles,clusterrolebindings,mutatingwebhookconfigurations",
                                 "-o", "yaml").stdout)
    assert [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == [
        ("ClusterRole", "reader"), ("ClusterRoleBinding", "reader"),
        ("MutatingWebhookConfiguration", "istio-sidecar-injector")]
    assert all("namespace" not in i["metadata"] for i in listed["items"])
    assert kube("get", "role", "r", "-n", "default", "-o", "name").stdout.strip() == (
        "role.rbac.authorization.k8s.io/r")


@pytest.mark.integration
def test_errors_are_status_objects_like_the_real_server(server: ApiServer, kube: Kube) -> None:
    ns = "err-ns"
    kube.apply(namespace(ns), configmap("dup", ns))
    dup = kube("create", "-f", "-", input=yaml.safe_dump(configmap("dup", ns)), check=False)
    assert dup.returncode == 1
    assert 'Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" already exists' in (
        dup.stderr)
    missing = kube("get", "deployment", "nope", "-n", ns, check=False)
    assert missing.returncode == 1 and 'deployments.apps "nope" not found' in missing.stderr
    kube("delete", "configmap", "nope", "-n", ns, "--ignore-not-found")
    no_ns = kube("create", "configmap", "x", "-n", "no-such-ns", check=False)
    assert 'namespaces "no-such-ns" not found' in no_ns.stderr
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(f"{server.url}/api/v1/namespaces/{ns}/configmaps/nope", timeout=5)
    status = json.load(got.value)
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'configmaps "nope" not found', "reason": "NotFound",
                      "details": {"name": "nope", "kind": "configmaps"}, "code": 404}


@pytest.mark.integration
def test_finalizers_hold_a_deletion_until_removed(server: ApiServer, kube: Kube) -> None:
    ns = "fin-ns"
    held = configmap("held", ns)
    held["metadata"]["finalizers"] = ["example.io/hold"]
    kube.apply(namespace(ns), held)
    kube("delete", "configmap", "held", "-n", ns, "--wait=false")
    assert server.store.get("configmaps", ns, "held")["metadata"]["deletionTimestamp"]
    kube("patch", "configmap", "held", "-n", ns, "--type=merge", "-p", '{"metadata": {"finalizers": null}}')
    assert server.store.get("configmaps", ns, "held") is None


@pytest.mark.integration
def test_a_failing_hook_is_a_500_status(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(pod: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("sidecar template")

    with ApiServer(name="broken", injector=broken, node=None) as api:
        api.start()
        kube = kube_for(api, tmp_path)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": "x"}]}}
        done = kube("apply", "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert done.returncode == 1 and "internal error in the rehearsal API server: KeyError('sidecar template')" in (
        done.stderr)
    assert "POST /api/v1/namespaces/default/pods failed" in caplog.text


@pytest.mark.integration
def test_label_and_field_selectors(kube: Kube) -> None:
    ns = "sel-ns"
    docs = [namespace(ns)]
    for name, tier in (("a", "front"), ("b", "back"), ("c", None)):
        doc = configmap(name, ns)
        doc["metadata"]["labels"] = {"tier": tier} if tier else {"other": "x"}
        docs.append(doc)
    kube.apply(*docs)

    def names(*args: str) -> list[str]:
        out = kube("get", "configmaps", "-n", ns, *args, "-o", "jsonpath={.items[*].metadata.name}").stdout
        return out.split()

    assert names("-l", "tier=front") == ["a"]
    assert names("-l", "tier!=front") == ["b", "c"]
    assert names("-l", "tier in (front,back)") == ["a", "b"]
    assert names("-l", "tier notin (front)") == ["b", "c"]
    assert names("-l", "tier") == ["a", "b"]
    assert names("-l", "!tier") == ["c"]
    assert names("--field-selector", "metadata.name=b") == ["b"]
    assert names("--field-selector", "metadata.name!=b", "-l", "tier") == ["a"]
    assert kube("get", "configmaps", "-A", "-l", "tier=back", "-o", "name").stdout.strip() == "configmap/b"
    table = kube("get", "configmaps", "-n", ns, "-l", "tier=front").stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"] and table[1].split()[0] == "a"


# --- controllers ----------------------------------------------------------------------------------------
@pytest.mark.integration
def test_deployment_makes_injected_pods_that_become_ready(server: ApiServer, kube: Kube) -> None:
    ns = "ctl-ns"
    kube.apply(namespace(ns, inject=True), deployment("httpbin", ns, replicas=2, version="v1"))
    kube("rollout", "status", "-n", ns, "deployment/httpbin", "--timeout=20s")
    kube("wait", "--for=condition=Ready", "pod", "-l", "app=httpbin", "-n", ns, "--timeout=20s")
    pods = kube.json("get", "pods", "-n", ns, "-l", "app=httpbin")["items"]
    assert len(pods) == 2
    dep = kube.json("get", "deployment", "httpbin", "-n", ns)
    assert readiness.deployment_rolled_out(dep)[0] and readiness.pods_ready(pods, proxy="sidecar")[0]
    rs = kube.json("get", "replicasets", "-n", ns)["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    for pod in pods:
        meta = pod["metadata"]
        assert re.fullmatch(r"httpbin-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}",
                            meta["name"])
        assert meta["labels"]["version"] == "v1" and meta["labels"]["pod-template-hash"] in meta["name"]
        assert meta["ownerReferences"][0]["name"] == rs[0]["metadata"]["name"] and meta["name"] in INJECTED
        init = {s["name"]: s for s in pod["status"]["initContainerStatuses"]}
        assert init["istio-proxy"]["ready"] and "running" in init["istio-proxy"]["state"]
        assert init["istio-init"]["state"]["terminated"]["reason"] == "Completed"
    table = kube("get", "pods", "-n", ns).stdout.splitlines()
    assert table[1].split()[1:3] == ["2/2", "Running"]
    old = {p["metadata"]["name"] for p in pods}
    kube("rollout", "restart", "-n", ns, "deployment/httpbin")
    kube("rollout", "status", "-n", ns, "deployment/httpbin", "--timeout=20s")

    def new_pods() -> set[str] | None:
        names = {p["metadata"]["name"] for p in server.store.list("pods", ns)}
        return names if len(names) == 2 and not names & old else None

    current = poll(new_pods, "old pods replaced after rollout restart")
    victim = sorted(current)[0]
    kube("delete", "pod", victim, "-n", ns)  # the ReplicaSet makes a replacement
    poll(lambda: len({p["metadata"]["name"] for p in server.store.list("pods", ns)} - {victim}) == 2,
         "a replacement for the deleted pod")
    assert kube.json("get", "deployment", "httpbin", "-n", ns)["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "2"
    kube("delete", "deployment", "httpbin", "-n", ns)
    poll(lambda: not server.store.list("pods", ns) and not server.store.list("replicasets.apps", ns),
         "pods and replicasets collected with their deployment")


@pytest.mark.integration
def test_terminating_namespace_refuses_new_content(tmp_path: Path) -> None:
    # a server of its own with a long termination window: the assertions must not race the finalizer
    with ApiServer(name="term", namespace_finalize_delay=30, node=None) as api:
        api.start()
        kube = kube_for(api, tmp_path)
        ns = "term-ns"
        kube.apply(namespace(ns), configmap("cm", ns))
        kube("delete", "namespace", ns, "--wait=false")
        got = kube.json("get", "namespace", ns)
        assert got["status"]["phase"] == "Terminating" and got["metadata"]["deletionTimestamp"]
        refused = kube("create", "configmap", "late", "-n", ns, check=False)
        assert refused.returncode == 1 and (
            f'configmaps "late" is forbidden: unable to create new content in namespace {ns} because it is being'
            " terminated") in refused.stderr
        assert api.store.get("configmaps", ns, "cm") is not None  # contents stay while Terminating


@pytest.mark.integration
def test_namespace_delete_waits_until_it_and_its_contents_are_gone(server: ApiServer, kube: Kube) -> None:
    ns = "term2"
    docs = [namespace(ns), configmap("cm", ns), deployment("app", ns)]
    kube.apply(*docs)
    kube("rollout", "status", "-n", ns, "deployment/app", "--timeout=20s")
    started = time.monotonic()
    out = kube("delete", "-f", "-", input=yaml.safe_dump_all(docs))  # later deletes in the file still find theirs
    assert f'namespace "{ns}" deleted' in out.stdout and 'deployment.apps "app" deleted' in out.stdout
    assert time.monotonic() - started >= server.namespace_finalize_delay
    assert server.store.get("namespaces", None, ns) is None
    assert not server.store.list("configmaps", ns) and not server.store.list("pods", ns)


@pytest.mark.integration
def test_service_status_load_balancer_is_settable(server: ApiServer, kube: Kube) -> None:
    ns = "svc-ns"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gw", "namespace": ns},
           "spec": {"type": "LoadBalancer", "selector": {"app": "gw"}, "ports": [{"name": "http", "port": 80}]}}
    kube.apply(namespace(ns), svc)
    kube("patch", "service", "gw", "-n", ns, "--subresource=status", "--type=merge",
         "-p", '{"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}')
    jsonpath = "jsonpath={.status.loadBalancer.ingress[0].ip}"
    assert kube("get", "svc", "gw", "-n", ns, "-o", jsonpath).stdout == "127.0.0.1"
    svc["spec"]["ports"][0]["port"] = 8080  # an apply of the spec leaves the status alone
    kube.apply(svc)
    assert kube("get", "svc", "gw", "-n", ns, "-o", jsonpath).stdout == "127.0.0.1"
    live = server.store.get("services", ns, "gw")
    assert [(p["name"], p["port"]) for p in live["spec"]["ports"]] == [("http", 8080)]  # merged by port
    assert live["spec"]["clusterIP"].startswith("10.96.")
    live["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}
    server.store.replace(live)
    assert kube("get", "svc", "gw", "-n", ns, "-o", "jsonpath={.status.loadBalancer.ingress[0].hostname}"
                ).stdout == "lb.example"


def test_store_api_from_another_thread(server: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    from rehearsal.apiserver.errors import ApiError

    ns = "store-ns"
    seen: list[tuple[str, str, str]] = []
    server.store.subscribe(lambda t, r, o: seen.append((t, r, o["metadata"]["name"]))
                           if o["metadata"].get("namespace") == ns and r != "serviceaccounts" else None)
    errors: list[BaseException] = []

    def broken(event: str, resource: str, obj: dict[str, Any]) -> None:
        raise RuntimeError("a subscriber's bug")

    server.store.subscribe(broken)  # logged; neither the writer nor the other subscribers notice

    def writer() -> None:
        try:
            server.store.create(namespace(ns))
            created = server.store.create(configmap("direct", ns, a="1"))
            assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
            stale = dict(created, metadata={**created["metadata"]})
            created["data"]["a"] = "2"
            server.store.replace(created)
            with pytest.raises(ApiError, match="the object has been modified"):
                server.store.replace(stale)  # its resourceVersion is no longer the current one
            server.store.delete("configmaps", ns, "direct")
            hook = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                    "metadata": {"name": f"{ns}-hook"}, "webhooks": []}
            hook = server.store.create(hook)
            assert hook["metadata"]["generation"] == 1
            hook["metadata"]["labels"] = {"a": "b"}
            assert server.store.replace(hook)["metadata"]["generation"] == 1  # metadata only
            hook["webhooks"] = [{"name": "x.example.io"}]
            hook["metadata"].pop("resourceVersion")
            assert server.store.replace(hook)["metadata"]["generation"] == 2
            with pytest.raises(ApiError, match='namespaces "nowhere" not found'):
                server.store.create(configmap("x", "nowhere"))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(timeout=10)
    server.store.unsubscribe(broken)
    assert not errors, errors
    assert [e for e in seen if e[1] == "configmaps"] == [
        ("ADDED", "configmaps", "direct"), ("MODIFIED", "configmaps", "direct"), ("DELETED", "configmaps", "direct")]
    assert server.store.get("configmaps", ns, "direct") is None
    assert "a subscriber's bug" in caplog.text


# --- watches --------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_watch_streams_events_and_ends_with_its_client(server: ApiServer, kube: Kube) -> None:
    ns = "watch-ns"
    kube.apply(namespace(ns))
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?watch=true&labelSelector=w%3D1"
    events: list[tuple[str, str]] = []
    got_delete = threading.Event()
    subscribed: list[tuple[str, str]] = []
    server.store.subscribe(lambda t, r, o: subscribed.append((t, o["metadata"]["name"])) if r == "configmaps"
                           and o["metadata"].get("namespace") == ns else None)
    baseline = server.active_streams
    with urllib.request.urlopen(url, timeout=10) as stream:
        poll(lambda: server.active_streams > baseline, "watch registered")
        for name in ("one", "two"):
            doc = configmap(name, ns, k="v")
            doc["metadata"]["labels"] = {"w": "1"}
            server.store.create(doc)
        kube("label", "configmap", "two", "-n", ns, "w-")  # leaves the selector: DELETED for this watch
        for line in stream:
            event = json.loads(line)
            events.append((event["type"], event["object"]["metadata"]["name"]))
            if event["type"] == "DELETED":
                got_delete.set()
                break
    assert events == [("ADDED", "one"), ("ADDED", "two"), ("DELETED", "two")]
    assert ("MODIFIED", "two") in subscribed
    poll(lambda: server.active_streams == baseline, "watch ended when its client went away")


# --- RBAC and SelfSubjectAccessReview -------------------------------------------------------------------
def test_self_subject_access_review_protobuf_decoding() -> None:
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    attrs = field(1, b"team-foo") + field(2, b"create") + field(3, b"apps") + field(5, b"deployments")
    review = field(2, field(1, attrs))
    unknown = field(1, field(1, b"authorization.k8s.io/v1") + field(2, b"SelfSubjectAccessReview")) + field(
        2, review)
    spec = rbac.review_spec(rbac.PROTOBUF_MAGIC + unknown, "application/vnd.kubernetes.protobuf")
    assert spec == {"resourceAttributes": {"namespace": "team-foo", "verb": "create", "group": "apps",
                                           "resource": "deployments"}}
    tenant = Tenant("alice", ("team-",))
    assert rbac.review_answer(spec, tenant)["status"]["allowed"] is True
    assert rbac.review_answer({"resourceAttributes": {**spec["resourceAttributes"], "namespace": "istio-system"}},
                              tenant)["status"]["allowed"] is False


@pytest.mark.integration
def test_tenant_rbac_over_tls(tmp_path: Path) -> None:
    tenants = {"alice-token": Tenant("alice", ("team-",)), "bob-token": Tenant("bob", ("ro-",), False)}
    with ApiServer(name="rbac", tenants=tenants, pod_ready_delay=0, exec_handler=run_command) as api:
        assert api.start().startswith("https://127.0.0.1:")  # kubectl sends tokens over https only
        alice = kube_for(api, tmp_path / "alice", token="alice-token")
        bob = kube_for(api, tmp_path / "bob", token="bob-token")
        stranger = kube_for(api, tmp_path / "x", token="wrong")
        assert alice("auth", "can-i", "create", "deployments.apps", "-n", "team-a").stdout.strip() == "yes"
        assert alice("auth", "can-i", "create", "pods/exec", "-n", "team-a").stdout.strip() == "yes"
        assert alice("auth", "can-i", "create", "namespaces").stdout.strip() == "yes"  # the name is checked later
        assert bob("auth", "can-i", "create", "namespaces", check=False).stdout.strip() == "no"
        assert alice("auth", "can-i", "list", "nodes", check=False).stdout.strip() == "no"
        denied = alice("auth", "can-i", "create", "requestauthentications.security.istio.io", "-n", "istio-system",
                       check=False)
        assert denied.stdout.strip() == "no"
        alice.apply(namespace("team-a"), deployment("app", "team-a"))
        alice("rollout", "status", "-n", "team-a", "deployment/app", "--timeout=20s")
        assert alice("exec", "-n", "team-a", "deploy/app", "--", "echo", "over", "wss").stdout == "over wss\n"
        crd = alice("get", "crd", "x.example.io", check=False)
        assert crd.returncode == 1 and (
            'customresourcedefinitions.apiextensions.k8s.io "x.example.io" is forbidden: User "alice" cannot get'
            ' resource "customresourcedefinitions" in API group "apiextensions.k8s.io" at the cluster scope'
        ) in crd.stderr
        other = alice("get", "configmaps", "-n", "istio-system", check=False)
        assert 'User "alice" cannot list resource "configmaps" in API group "" in the namespace "istio-system"' in (
            other.stderr)
        assert "forbidden" in alice("get", "nodes", check=False).stderr
        assert "forbidden" in alice("create", "namespace", "other", check=False).stderr
        assert "forbidden" in bob("create", "namespace", "ro-x", check=False).stderr
        assert "forbidden" in bob("get", "pods", "-n", "team-a", check=False).stderr
        assert bob("get", "namespace", "ro-x", check=False).stderr.startswith("Error from server (NotFound)")
        assert "You must be logged in to the server" in stranger("get", "pods", "-n", "team-a", check=False).stderr
        assert 'namespace "team-a" deleted' in alice("delete", "namespace", "team-a").stdout  # waits: watch by name
        assert api.store.get("namespaces", None, "team-a") is None


# --- exec and logs --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exec_pod(server: ApiServer, kube: Kube) -> str:
    ns = "exec-ns"
    kube.apply(namespace(ns, inject=True), deployment("sleep", ns))
    kube("rollout", "status", "-n", ns, "deployment/sleep", "--timeout=20s")
    return kube.json("get", "pods", "-n", ns, "-l", "app=sleep")["items"][0]["metadata"]["name"]


@pytest.mark.integration
def test_exec_output_exit_codes_and_container(kube: Kube, exec_pod: str) -> None:
    ns = "exec-ns"
    assert kube("exec", "-n", ns, exec_pod, "-c", "sleep", "--", "echo", "hello", "world").stdout == "hello world\n"
    assert kube("exec", "-n", ns, "deploy/sleep", "-c", "istio-proxy", "--", "whoami").stdout == (
        f"{ns}/{exec_pod}/istio-proxy")
    failed = kube("exec", "-n", ns, exec_pod, "-c", "sleep", "--", "exit", "7", check=False)
    assert failed.returncode == 7 and failed.stdout == "out\n"
    assert "failing on purpose" in failed.stderr and "command terminated with exit code 7" in failed.stderr
    bad = kube("exec", "-n", ns, exec_pod, "-c", "nope", "--", "echo", check=False)
    assert bad.returncode == 1 and "container nope is not valid" in bad.stderr
    long_args = ["x" * 105_000] * 10  # exec commands travel in the query string: > 1 MiB, aiohttp's default is 8 KiB
    assert kube("exec", "-n", ns, exec_pod, "-c", "sleep", "--", "len", *long_args).stdout == "1050000"


@pytest.mark.integration
def test_request_log_is_debug_only_and_masks_tokens(kube: Kube, exec_pod: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    token = "eyJ" + "a" * 40 + "." + "b" * 40 + "." + "c" * 40
    command = ["exit", "3", "-H", f"Authorization: Bearer {token}"]
    kube("exec", "-n", "exec-ns", exec_pod, "-c", "sleep", "--", *command, check=False)
    assert "/exec?" not in caplog.text  # INFO and above: nothing per request
    caplog.set_level(logging.DEBUG, logger="rehearsal.apiserver")
    # another exit code: the first exec's line may still be logged after the level changed (the server logs a
    # request when its handler ends, which can come after kubectl exits)
    command[1] = "4"
    failed = kube("exec", "-n", "exec-ns", exec_pod, "-c", "sleep", "--", *command, check=False)
    assert failed.returncode == 4

    def exec_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "/exec?command=exit&command=4&" in r.getMessage()]

    # the server logs the exec when its handler ends, which may come after kubectl has exited: poll for it
    deadline = time.monotonic() + 10
    while not exec_lines() and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = exec_lines()
    assert len(lines) == 1 and "-> 101" in lines[0] and "eyJaaa" in lines[0] and token not in caplog.text


@pytest.mark.integration
def test_exec_stdin_is_byte_exact(kube: Kube, exec_pod: str) -> None:
    data = os.urandom(1_500_000)
    out = kube("exec", "-i", "-n", "exec-ns", exec_pod, "-c", "sleep", "--", "cat", input=data, text=False)
    assert out.returncode == 0 and out.stdout == data


@pytest.mark.integration
def test_exec_needs_a_running_pod(server: ApiServer, kube: Kube) -> None:
    ns = "pending-ns"
    kube.apply(namespace(ns))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    server.store.create({**pod, "status": {"phase": "Succeeded"}})
    done = kube("exec", "-n", ns, "pending", "--", "echo", check=False)
    assert done.returncode == 1 and "completed pod" in done.stderr
    assert kube("get", "pod", "pending", "-n", ns, "-o", "jsonpath={.status.phase}").stdout == "Succeeded"


@pytest.mark.integration
def test_logs(kube: Kube, exec_pod: str) -> None:
    ns = "exec-ns"
    assert kube("logs", "-n", ns, exec_pod, "-c", "sleep", "--tail=2").stdout == "sleep line 4\nsleep line 5\n"
    assert kube("logs", "-n", ns, "deploy/sleep", "-c", "istio-proxy", "--tail=1").stdout == "istio-proxy line 5\n"
    assert kube("logs", "-n", ns, exec_pod, "-c", "sleep").stdout.count("\n") == 5


# --- the kubernetes Python client -----------------------------------------------------------------------
@pytest.mark.integration
def test_kubernetes_python_client(server: ApiServer, kube: Kube, exec_pod: str) -> None:
    from kubernetes import client, config, watch
    from kubernetes.stream import stream

    api_client = config.new_client_from_config(str(kube.kubeconfig))
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    try:
        pods = core.list_namespaced_pod("exec-ns", label_selector="app=sleep").items
        assert [p.metadata.name for p in pods] == [exec_pod]
        assert apps.read_namespaced_deployment("sleep", "exec-ns").status.ready_replicas == 1
        watcher = watch.Watch()
        for event in watcher.stream(core.list_namespace, timeout_seconds=10, _request_timeout=10):
            if event["object"].metadata.name == "exec-ns":
                assert event["type"] == "ADDED"
                watcher.stop()
        out = stream(core.connect_get_namespaced_pod_exec, exec_pod, "exec-ns", container="sleep",
                     command=["echo", "from", "python"], stderr=True, stdin=False, stdout=True, tty=False)
        assert out == "from python\n"
        ws = stream(core.connect_get_namespaced_pod_exec, exec_pod, "exec-ns", container="sleep",
                    command=["exit", "3"], stderr=True, stdin=False, stdout=True, tty=False,
                    _preload_content=False)
        ws.run_forever(timeout=10)
        assert ws.returncode == 3
    finally:
        api_client.close()


@pytest.mark.integration
def test_exec_v4_channel_protocol(server: ApiServer, exec_pod: str) -> None:
    import websocket

    url = (f"{server.url.replace('http', 'ws', 1)}/api/v1/namespaces/exec-ns/pods/{exec_pod}/exec"
           "?command=cat&container=sleep&stdin=true&stdout=true&stderr=true")
    ws = websocket.create_connection(url, subprotocols=["v4.channel.k8s.io"], timeout=10)
    try:
        assert ws.getsubprotocol() == "v4.channel.k8s.io"
        ws.send_binary(b"\x00" + b"v4 stdin")
        frames = []
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            frames.append(data)
    finally:
        ws.close()
    assert frames[0] == b"\x01v4 stdin" and frames[-1][:1] == b"\x03"
    assert json.loads(frames[-1][1:])["status"] == "Success"


# --- lifecycle ------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_stop_frees_the_port_and_leaves_no_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    api = ApiServer(name="life", pod_ready_delay=0, exec_handler=run_command)
    url = api.start()
    port = int(url.rsplit(":", 1)[1])
    kube = kube_for(api, tmp_path)
    kube.apply(namespace("life"), deployment("app", "life"))
    kube("rollout", "status", "-n", "life", "deployment/app", "--timeout=20s")
    assert kube("exec", "-n", "life", "deploy/app", "--", "echo", "x").stdout == "x\n"
    watcher = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(kube.kubeconfig), "get", "pods", "-n", "life",
                                "-w"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "KUBECACHEDIR": str(kube.cache)})
    try:
        poll(lambda: api.active_streams, "kubectl get -w is watching")
        started = time.monotonic()
        api.stop()
        assert time.monotonic() - started < 5
        api.stop()  # idempotent
        assert watcher.wait(timeout=10) is not None  # the open watch was closed by stop()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with socket.socket() as probe:  # closed connections linger in TIME_WAIT; a new server (SO_REUSEADDR) binds
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    assert set(threading.enumerate()) - before == set()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = ApiServer(name="busy", node=None)
        with pytest.raises(OSError, match=r"busy: cannot listen on 127\.0\.0\.1:\d+"):
            busy.start(port=taken.getsockname()[1])
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(ValueError, match="kube_version must look like v1.32.4, not '1.32'"):
        ApiServer(kube_version="1.32")


# --- the project's own workloads, through the kube helpers the targets use ------------------------------
def istio_crd(kind: str, plural: str, group: str = "networking.istio.io") -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema}]}}


@pytest.mark.integration
def test_project_workloads_deploy_and_become_ready(server: ApiServer, kube: Kube,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECACHEDIR", str(kube.cache))
    kubectl = Kubectl(str(KUBECTL), str(kube.kubeconfig))
    kubectl.apply([istio_crd("Gateway", "gateways"), istio_crd("VirtualService", "virtualservices")])
    variables = {"NAMESPACE": "wl-foo", "BOOKINFO_NAMESPACE": "wl-bookinfo", "EXTERNAL_NAMESPACE": "wl-jwks",
                 "INJECTION_LABEL_KEY": "istio-injection", "INJECTION_LABEL_VALUE": "enabled"}
    docs = workloads.load(variables)
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    rest = [d for d in docs if d["kind"] != "Namespace"]
    kubectl.apply(namespaces)
    kubectl.apply(rest + workloads.jwks_configmaps('{"keys": []}', "wl-foo", "wl-jwks")
                  + [workloads.ca_secret("wl-foo", "-----BEGIN CERTIFICATE-----\n")])
    for ns_var, name, proxy in workloads.DEPLOYMENTS:
        namespace = variables[ns_var]

        def check(namespace: str = namespace, name: str = name, proxy: readiness.ProxyKind = proxy) -> readiness.Check:
            return readiness.deployment_ready(kubectl.json, namespace, name, proxy)

        readiness.wait_for(check, timeout=WAIT, what=f"{namespace}/{name}", interval=0.05)
    assert kubectl.json(["get", "virtualservice", "bookinfo", "-n", "wl-bookinfo"])["spec"]["gateways"] == [
        "bookinfo-gateway"]
    secret = server.store.get("secrets", "wl-foo", workloads.EXTERNAL_JWKS_CA_SECRET)
    assert "stringData" not in secret and set(secret["data"]) == {"cacert", "ca.crt"}
    # what KubeMesh.apply does with a scenario's resources: apply, then delete what is no longer wanted
    kubectl.apply([CRD])
    ra = request_authentication("ra", "wl-foo", [{"issuer": "i", "jwks": "{}"}])
    kubectl.apply([ra])
    kubectl.delete(ResourceRef.of(ra), timeout=10)
    assert server.store.get("requestauthentications.security.istio.io", "wl-foo", "ra") is None
    kubectl.delete(ResourceRef.of(ra), timeout=10)  # --ignore-not-found: a second delete is fine


@pytest.mark.integration
def test_module_entry_point(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    with subprocess.Popen([sys.executable, "-m", "rehearsal.apiserver", "--kubeconfig", str(kubeconfig)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[1]) as proc:
        try:
            url = proc.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
            kube = Kube(None, kubeconfig, tmp_path / "cache")  # type: ignore[arg-type]
            assert kube("exec", "-n", "default", "nope", "--", "x", check=False).returncode == 1
            assert kube("get", "ns", "default", "-o", "name").stdout.strip() == "namespace/default"
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
    port = url.rsplit(":", 1)[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run([sys.executable, "-m", "rehearsal.apiserver", "--port",
                               str(taken.getsockname()[1])], capture_output=True, text=True, timeout=30,
                              cwd=Path(__file__).resolve().parents[1])
    assert busy.returncode == 2 and busy.stdout == "" and len(busy.stderr.strip().splitlines()) == 1
    assert "cannot listen on 127.0.0.1" in busy.stderr and port
