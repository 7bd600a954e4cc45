"""The kind and cluster targets without a cluster: fast Docker check, errors, requests, apply bookkeeping."""

from __future__ import annotations

import http.server
import shutil
import threading
import time

import pytest

from meshjwt.errors import EnvironmentProblem, TargetCannot
from meshjwt.kube.docker import docker_engine_problem
from meshjwt.mesh import Request
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets import target_class

JWKS = '{"keys": []}'


def settings(target: str, **options) -> Settings:
    return Settings(target=target, timeouts=Timeouts(request=3.0),
                    target_options=target_class(target).Options.from_values(options))


@pytest.mark.integration
def test_kind_without_docker_fails_fast_with_one_line(tmp_path, monkeypatch):
    if docker_engine_problem() is None:
        pytest.skip("a Docker engine is available here: the no-Docker path cannot be exercised")
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path))
    from meshjwt.targets.kind import KindMesh

    mesh = KindMesh(settings("kind"), JWKS)
    monkeypatch.setenv("TOX_ENV_NAME", "e2e")
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem) as raised:
        mesh.start()
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "\n" not in message and "Docker" in message and "`tox -e local`" in message
    monkeypatch.setenv("MESHJWT_LAUNCHER", "meshjwt")  # started by `meshjwt run`: its user has no tox env
    with pytest.raises(EnvironmentProblem, match="with `meshjwt run --target local`$"):
        mesh.start()
    mesh.stop()  # safe after a failed start
    mesh.stop()
    assert not list(tmp_path.rglob("kind"))  # nothing downloaded before the check


def test_kind_plans_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path))
    from meshjwt.targets.kind import KindMesh, KindOptions

    mesh = KindMesh(settings("kind", istio_version="1.29"), JWKS)
    assert mesh.cluster_name == "meshjwt-1-29" and mesh.ingress_url == "http://127.0.0.1:31080"
    assert mesh.kind_config()["nodes"][0]["labels"]["meshjwt.io/config-hash"] == mesh.config_hash()
    other = KindMesh(Settings(target="kind", jwks_fetch_mode="envoy", target_options=KindOptions(istio_version="1.29")),
                     JWKS)
    assert other.config_hash() == mesh.config_hash()  # the run switches istiod's fetch mode itself
    assert other.overlay()["spec"]["values"]["pilot"]["env"]["PILOT_JWT_ENABLE_REMOTE_JWKS"] == "envoy"
    assert "jwksResolverExtraRootCA" not in str(mesh.overlay())
    assert mesh.overlay("PEM")["spec"]["values"]["pilot"]["jwksResolverExtraRootCA"] == "PEM"
    variables = mesh.variables()
    assert variables["NAMESPACE"] == "foo" and variables["JWKS"] == JWKS and "ISSUER" not in variables
    assert variables["EXTERNAL_JWKS_HOST"] == "jwks.meshjwt.test"
    assert mesh.info().version == "1.29.2"


class FakeKubectl:
    """Records apply/delete calls instead of running kubectl."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []

    def apply(self, docs, *, timeout=60.0):
        self.calls.append(
            ("apply", [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs])
        )

    def delete(self, ref, *, timeout=60.0, wait=False):
        self.calls.append(("delete", repr(ref)))


def ra(name: str) -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name},
        "spec": {},
    }


def test_apply_replaces_previous_scenario_and_clear_removes_all():
    from meshjwt.targets.cluster import ClusterMesh

    mesh = ClusterMesh(settings("cluster", namespace_prefix="t1"), JWKS)
    fake = FakeKubectl()
    mesh.data = mesh.control = fake  # type: ignore[assignment]
    ns = mesh.vars["NAMESPACE"]
    mesh.apply([ra("a"), ra("b")])
    mesh.apply([ra("b"), ra("c")])
    assert fake.calls[0] == (
        "apply",
        [("RequestAuthentication", "a", ns), ("RequestAuthentication", "b", ns)],
    )
    assert fake.calls[1] == ("delete", f"requestauthentication.security.istio.io/{ns}/a")
    mesh.clear()
    assert {c[1] for c in fake.calls[3:]} == {
        f"requestauthentication.security.istio.io/{ns}/b",
        f"requestauthentication.security.istio.io/{ns}/c",
    }
    with pytest.raises(TargetCannot, match="PILOT_JWT_ENABLE_REMOTE_JWKS=envoy"):
        mesh.apply([ra("a")], jwks_fetch_mode="envoy")


def test_cluster_namespaces_are_prefixed():
    from meshjwt.targets.cluster import ClusterMesh

    mesh = ClusterMesh(settings("cluster", namespace_prefix="ci-42"), JWKS)
    v = mesh.variables()
    suffix = mesh.prefix.removeprefix("ci-42-")
    assert len(suffix) == 6 and (v["NAMESPACE"], v["BOOKINFO_NAMESPACE"]) == (f"ci-42-{suffix}-foo",
                                                                             f"ci-42-{suffix}-bookinfo")  # fmt: skip
    again = ClusterMesh(settings("cluster", namespace_prefix="ci-42"), JWKS).variables()["NAMESPACE"]
    assert again != v["NAMESPACE"]  # back-to-back runs never meet the previous run's (terminating) namespace
    auto = ClusterMesh(settings("cluster"), JWKS).variables()["NAMESPACE"]
    assert (
        auto.startswith("mjwt-") and auto != ClusterMesh(settings("cluster"), JWKS).variables()["NAMESPACE"]
    )


@pytest.mark.integration
def test_cluster_unreachable_is_one_line_within_seconds(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on this machine (the target would download the pinned one)")
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: x}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    from meshjwt.targets.cluster import ClusterMesh

    mesh = ClusterMesh(settings("cluster", kubeconfig=str(config), kubectl_path=kubectl), JWKS)
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match="cannot reach the cluster") as raised:
        mesh.start()
    assert time.monotonic() - started < 15 and "\n" not in str(raised.value)
    mesh.stop()


@pytest.fixture
def echo_server():
    seen: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Host", "")))
            body = b"no healthy upstream"
            self.send_response(404)
            self.send_header("X-Thing", "a")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_ingress_request_sends_path_verbatim(echo_server):
    from meshjwt.targets.cluster import ClusterMesh

    url, seen = echo_server
    mesh = ClusterMesh(settings("cluster", ingress_url=url), JWKS)
    response = mesh.request(
        Request(
            client="ingress", path="/productpage/../api/v1/products/0", headers={"Authorization": "Bearer x"}
        )
    )
    assert seen == [("/productpage/../api/v1/products/0", url.removeprefix("http://"))]
    assert (response.status, response.headers["x-thing"], response.body) == (404, "a", "no healthy upstream")
    mesh.request(Request(client="ingress", path="/%2e%2e/x", host="bookinfo.example"))
    assert seen[-1] == ("/%2e%2e/x", "bookinfo.example")


def test_ingress_connection_failure_is_status_0():
    from meshjwt.targets.cluster import ClusterMesh

    mesh = ClusterMesh(settings("cluster", ingress_url="http://127.0.0.1:9"), JWKS)
    response = mesh.request(Request(client="ingress", path="/productpage"))
    assert response.status == 0 and "failed" in response.error


def _istiod(name="istiod", image="docker.io/istio/pilot:1.30.3", labels=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"template": {"spec": {"containers": [{"name": "discovery", "image": image}]}}}}  # fmt: skip


def test_mesh_version_never_from_a_digest_and_revisions_are_found():
    from meshjwt.targets.cluster import istio_version_of, pick_istiod

    assert istio_version_of(_istiod()) == "1.30.3"
    assert istio_version_of(_istiod(image="gcr.io/istio-release/pilot:1.29.1-distroless")) == "1.29.1"
    assert istio_version_of(_istiod(image="reg/pilot@sha256:" + "ab" * 32)) is None  # a digest says nothing
    assert istio_version_of(_istiod(image="reg:5000/pilot@sha256:" + "ab" * 32)) is None
    labelled = _istiod(image="reg/pilot:latest", labels={"app.kubernetes.io/version": "1.31.0"})
    assert istio_version_of(labelled) == "1.31.0"
    canary = _istiod("istiod-canary", labels={"istio.io/rev": "canary"})
    stable = _istiod("istiod-1-30", labels={"istio.io/rev": "1-30"})
    assert pick_istiod([stable, canary], "canary") is canary
    assert pick_istiod([stable, canary], "1-30") is stable
    assert pick_istiod([stable], None) is stable and pick_istiod([], None) is None
    assert pick_istiod([stable, _istiod()], None)["metadata"]["name"] == "istiod"


def test_no_kubeconfig_is_one_line(tmp_path, monkeypatch):
    from meshjwt.errors import ConfigError
    from meshjwt.targets.cluster import ClusterMesh

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="^no kubeconfig: pass --kubeconfig or set KUBECONFIG$"):
        ClusterMesh(settings("cluster"), JWKS).start()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello: world\n", "has no clusters: pass --kubeconfig with the cluster's kubeconfig"),
        ("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
         "contexts: [{name: a, context: {cluster: c}}]\n",
         "has no current context: pass --context NAME (its contexts: a)"),
    ],
)
def test_a_kubeconfig_without_clusters_or_current_context_is_one_line(tmp_path, monkeypatch, text, expected):
    """A hand-written kubeconfig used to reach kubectl: 'connection to the server localhost:8080 was refused'."""
    from meshjwt.errors import ConfigError
    from meshjwt.targets.cluster import ClusterMesh

    config = tmp_path / "kubeconfig"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        ClusterMesh(settings("cluster", kubeconfig=str(config)), JWKS).start()
    assert str(refused.value) == f"kubeconfig {config} {expected}"
