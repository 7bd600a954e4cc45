"""The in-cluster JWKS server's plans (nginx configuration, ConfigMaps, patches), the rehearsal's reading of that
configuration, and the kube targets' JWKS lifecycle decisions: all in process."""

from __future__ import annotations

import json

import pytest
import yaml

from meshjwt.errors import TargetCannot
from meshjwt.jwks_compare import compare_jwks_response
from meshjwt.kube import jwks_server
from meshjwt.kube.jwks_server import Answer
from meshjwt.kube.plans import istio_operator, refresh_seconds
from meshjwt.samples import workloads_dir
from meshjwt.settings import Settings, Timeouts
from rehearsal import nginx

KEYS = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]})


def test_refresh_interval_is_a_go_duration_with_istiods_default():
    assert refresh_seconds("15s") == 15 and refresh_seconds("1m30s") == 90 and refresh_seconds("500ms") == 0.5
    assert refresh_seconds(None) == refresh_seconds("") == 20 * 60
    with pytest.raises(ValueError, match="not a duration"):
        refresh_seconds("15")
    env = istio_operator("istiod")["spec"]["values"]["pilot"]["env"]
    assert refresh_seconds(env["PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"]) <= 30  # kind: short, read back by the target


@pytest.mark.parametrize(("answer", "control"), [
    (Answer(), {}),
    (Answer(body="<html>it's down</html>"), {"body": "<html>it's down</html>"}),
    (Answer(redirect=True), {"redirect": True}),
    (Answer(rate=100), {"delay": len(KEYS) / 100}),
])  # fmt: skip
def test_each_answer_is_read_back_as_nginx_would_serve_it(answer, control):
    assert nginx.control(jwks_server.conf(answer), len(KEYS)) == control


def test_the_manifests_own_configuration_serves_the_keys():
    docs = yaml.safe_load_all((workloads_dir() / "nginx-proxy.yaml").read_text())
    conf = next(d for d in docs if d["metadata"]["name"] == jwks_server.CONF_CONFIGMAP)["data"]["default.conf"]
    assert nginx.control(conf, 10) == {}


@pytest.mark.parametrize("conf", [
    "server { listen 80; location = /get_jwks { proxy_pass http://x; } }",
    "server { listen 80; location = /get_jwks { echo_sleep 1; alias /jwks/jwks.json; } }",
    "server { listen 80; location = /get_jwks { return 302 http://elsewhere/; } }",
    "server { listen 80; location = /get_jwks { return 200 '$host'; } }",
    "server { listen 80; location = /get_jwks { alias /jwks/jwks.json; }",
    "server { listen 8080; location = /get_jwks { alias /jwks/jwks.json; } }",
    "server { listen 80; location /get_jwks { alias /jwks/jwks.json; } }",
])  # fmt: skip
def test_the_rehearsal_refuses_what_it_does_not_model(conf):
    with pytest.raises(nginx.NginxConfError):
        nginx.control(conf, 10)


def test_bodies_are_quoted_for_nginx_and_variables_refused():
    assert nginx.control(jwks_server.conf(Answer(body="a\\b'c\"d")), 1) == {"body": "a\\b'c\"d"}
    with pytest.raises(ValueError, match=r"\$"):
        jwks_server.conf(Answer(body="costs $5"))


def test_slow_rate_makes_the_body_take_at_least_the_delay():
    for size, seconds in ((660, 1.5), (10, 3.0), (5000, 0.1)):
        rate = jwks_server.slow_rate(size, seconds)
        assert rate >= 1 and size / rate >= min(seconds, size)
    with pytest.raises(ValueError):
        jwks_server.slow_rate(10, 0)


def test_a_rollout_follows_exactly_what_is_served():
    def digest(answer: Answer, keys: str) -> str:
        patch = json.loads(jwks_server.restart_patch(answer, keys)[-1])
        return patch["spec"]["template"]["metadata"]["annotations"][jwks_server.SERVED_ANNOTATION]

    assert digest(Answer(), KEYS) == digest(Answer(), KEYS)
    assert len({digest(Answer(), KEYS), digest(Answer(redirect=True), KEYS), digest(Answer(), KEYS + " ")}) == 3
    assert jwks_server.replicas_patch(0)[-1] == '{"spec": {"replicas": 0}}'
    conf, keys = jwks_server.configmaps("foo", Answer(), KEYS)
    assert (conf["metadata"], keys["data"]) == ({"name": "nginx-proxy-conf", "namespace": "foo"}, {"jwks.json": KEYS})


def dump(providers: dict) -> str:
    jwt = {"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
           "providers": providers}  # fmt: skip
    return json.dumps({"configs": [{"dynamic_listeners": [{"active_state": {"listener": {"filters": [jwt]}}}]}]})


def test_the_refresh_marker_changes_the_keys_array_as_istiod_compares_it():
    """Issue 17: a marker outside ``keys`` is cached but never pushed by istiod (compareJWKSResponse), so the
    rotation's wait could never end; the marker is one extra public key, and every wait compares sorted keys."""
    marked = jwks_server.marked(KEYS, "m1")
    keys = json.loads(marked)["keys"]
    assert keys[:-1] == json.loads(KEYS)["keys"] and keys[-1]["kid"] == "meshjwt-refresh-m1" and "d" not in keys[-1]
    assert compare_jwks_response(KEYS, marked) == (True, None)  # istiod pushes it
    remarked = jwks_server.marked(marked, "m2")  # a second marker replaces the first
    assert [k["kid"] for k in json.loads(remarked)["keys"]] == ["k1", "meshjwt-refresh-m2"]
    outside = json.dumps({**json.loads(KEYS), "meshjwt_refresh": "m1"})  # the old marker: no push
    assert compare_jwks_response(KEYS, outside) == (False, None) and jwks_server.same_jwks(KEYS, outside)
    shuffled = json.dumps({"keys": list(reversed(json.loads(marked)["keys"]))})
    assert jwks_server.same_jwks(marked, shuffled)  # key order: istiod sorts by kid


def test_inline_jwks_of_the_issuers_providers_and_the_marker():
    marked = jwks_server.marked(KEYS, "m1")
    text = dump({"origins-0": {"issuer": "iss", "local_jwks": {"inline_string": marked}},
                 "origins-1": {"issuer": "other", "local_jwks": {"inline_string": KEYS}},
                 "origins-2": {"issuer": "iss", "remote_jwks": {"http_uri": {"uri": "http://x"}}}})  # fmt: skip
    inlined = jwks_server.inline_jwks(text, {"iss"})
    assert inlined == [marked, None]
    assert jwks_server.same_jwks(marked, json.dumps(json.loads(marked), indent=1))
    assert not jwks_server.same_jwks(KEYS, marked) and not jwks_server.same_jwks(None, KEYS)


def kube_mesh(interval: float | None, refresh_timeout: float = 120.0, version: str = "1.30"):
    from meshjwt.targets.cluster import ClusterMesh, ClusterOptions

    settings = Settings(target="cluster", version=version, timeouts=Timeouts(jwks_refresh=refresh_timeout),
                        target_options=ClusterOptions(namespace_prefix="t"))  # fmt: skip
    mesh = ClusterMesh(settings, KEYS)
    mesh.jwks_refresh_interval = interval
    return mesh


def test_waiting_for_istiods_refresh_needs_a_known_interval_within_the_timeout():
    with pytest.raises(TargetCannot, match="istiod is not visible"):
        kube_mesh(None).await_jwks_refresh()
    with pytest.raises(TargetCannot, match="raise --timeout-jwks-refresh"):
        kube_mesh(1200.0).rotate_jwks(KEYS)  # istiod's default 20 min: refused before anything changed
    envoy = kube_mesh(15.0)
    envoy.fetch_mode = "envoy"
    with pytest.raises(TargetCannot, match="proxies fetch"):
        envoy.await_jwks_refresh()


def test_body_that_nginx_cannot_return_is_unsupported():
    with pytest.raises(TargetCannot, match="nginx-proxy cannot answer"):
        kube_mesh(15.0).serve_jwks_body("price: $5")


class Store:
    """The API stand-in's store, as the data plane reads it: ConfigMaps and pods of one namespace."""

    def __init__(self) -> None:
        self.configmaps: dict[str, dict] = {}
        self.pods: list[dict] = []

    def get(self, resource: str, namespace: str, name: str) -> dict | None:
        return self.configmaps.get(name) if resource == "configmaps" else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict]:
        return self.pods if resource == "pods" else []

    def serve(self, answer: Answer, keys: str) -> None:
        self.configmaps = {d["metadata"]["name"]: d for d in jwks_server.configmaps("foo", answer, keys)}

    def start_pod(self, uid: str, ready: bool = True) -> None:
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        self.pods.append({"metadata": {"uid": uid, "labels": {"app": "nginx-proxy"}}, "status": status})


def test_rehearsal_serves_what_the_newest_ready_pod_mounted_at_start(tmp_path):
    from rehearsal.dataplane import DataPlane

    store = Store()
    plane = DataPlane(tmp_path, store, store)
    (tmp_path / "files").mkdir()

    def served() -> tuple[dict, str]:
        files = tmp_path / "files"
        control = json.loads((files / "nginx-proxy-control.json").read_text())
        keys = files / "nginx-proxy-jwks.json"
        return control, keys.read_text() if keys.is_file() else ""

    plane._nginx_proxy("foo")
    assert served()[0] == {"down": True}  # no pod
    store.serve(Answer(), KEYS)
    store.start_pod("a")
    plane._nginx_proxy("foo")
    assert served() == ({}, KEYS)
    rotated = KEYS.replace("k1", "k2")
    store.serve(Answer(redirect=True), rotated)  # ConfigMaps changed, no restart: the running pod serves as before
    plane._nginx_proxy("foo")
    assert served() == ({}, KEYS)
    store.start_pod("b", ready=False)  # a rollout: the new pod serves once ready
    plane._nginx_proxy("foo")
    assert served() == ({}, KEYS)
    store.pods[1]["status"]["conditions"][0]["status"] = "True"
    store.pods.pop(0)
    plane._nginx_proxy("foo")
    assert served() == ({"redirect": True}, rotated)
    store.pods.clear()  # scaled to 0
    plane._nginx_proxy("foo")
    assert served()[0] == {"down": True}
    store.configmaps["nginx-proxy-conf"]["data"]["default.conf"] = "server { listen 80; gzip on; }"
    store.start_pod("c")
    plane._nginx_proxy("foo")
    assert served()[0] == {"down": True} and any("REFUSED" in note for note in plane.notes)


def test_a_refused_update_is_not_running_but_is_delivered():
    from meshjwt.targets import config_probe

    jwt = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
    refused = {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "sidecar~httpbin.foo",
               "filters": [{"@type": jwt, "providers": {"origins-0": {"issuer": "iss"}}}]}  # fmt: skip
    text = json.dumps({"configs": [{"dynamic_listeners": [
        {"name": "sidecar~httpbin.foo", "active_state": {"listener": {"filters": []}}},
        {"error_state": {"failed_configuration": refused, "details": "has invalid local jwks"}},
    ]}]})  # fmt: skip
    assert config_probe.running(text) == config_probe.Fingerprint.NONE  # what the proxy enforces
    assert config_probe.refused(text).providers == {("iss", ())}  # what istiod sent and the proxy refused


class Recorder:
    """The kube target's kubectl, recording what it would apply, delete and run (no cluster)."""

    def __init__(self) -> None:
        self.applied: list[dict] = []
        self.deleted: list[str] = []
        self.ran: list[list[str]] = []

    def apply(self, docs, *, timeout: float = 0) -> None:
        self.applied.extend(docs)

    def delete(self, ref, *, timeout: float = 0, wait: bool = False) -> None:
        self.deleted.append(ref.name)

    def run(self, args, *, timeout: float = 0, check: bool = True):
        self.ran.append(list(args))


def test_a_failing_server_answers_503_keeps_its_pod_and_comes_back_up():
    """Issue 17: the late server after the window must not bring endpoints (a full push would heal it)."""
    mesh = kube_mesh(15.0)
    mesh.data = Recorder()
    mesh._await_jwks_server = lambda: None
    mesh.jwks_server_failing()
    conf = next(d for d in mesh.data.applied if d["metadata"]["name"] == jwks_server.CONF_CONFIGMAP)
    assert "return 503 'unavailable';" in conf["data"]["default.conf"]
    assert nginx.control(conf["data"]["default.conf"], 10) == {"status": 503, "body": "unavailable"}
    assert not any("replicas" in " ".join(args) for args in mesh.data.ran)  # no scaling: endpoints stay
    mesh.jwks_server_up()  # was a no-op for a failing server: the late-window case then tested nothing
    assert mesh._served == (Answer(), KEYS)


def test_an_unrelated_push_is_a_serviceentry_created_and_deleted():
    mesh = kube_mesh(15.0)
    mesh.data = Recorder()
    mesh.unrelated_push()
    [entry] = mesh.data.applied
    assert entry["kind"] == "ServiceEntry" and mesh.data.deleted == [entry["metadata"]["name"]]
    assert entry["spec"]["hosts"][0].endswith(".meshjwt.invalid")


@pytest.mark.parametrize(("version", "at_least", "below"), [("1.30", 19, 21), ("1.22", 69, 999)])
def test_the_retry_window_wait_and_the_refresh_after_a_given_up_entry(monkeypatch, version, at_least, below):
    mesh = kube_mesh(15.0, version=version)
    mesh.data = Recorder()
    mesh._await_jwks_server = lambda: None
    waits: list[float] = []

    def wait_for(check, *, timeout, what, interval=0.0):
        waits.append(round(float(check()[1].split("within ")[1].rstrip("s")), 0))

    monkeypatch.setattr("meshjwt.targets.kube.readiness.wait_for", wait_for)
    mesh._applied = []
    mesh.jwks_server_failing()
    mesh._applied_at = __import__("time").monotonic()
    mesh.await_jwks_retry_window()  # the rule's timeout (5 s default) + margin, from the apply
    assert waits[-1] == 10 and mesh._entry_dropped_at is not None
    mesh.jwks_server_up()
    # 1.23+: the failed background job leaves istiod's ticker alone (15 s + margin); before 1.23 it set it to 1 min
    mesh.await_jwks_refresh()
    assert at_least <= waits[-1] < below
