"""Issue 10: the local istiod's JWKS resolver, its per-version behaviour, the webhook, hybrid lookup, Envoy pairing."""

from __future__ import annotations

import copy
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshjwt.errors import ApplyRefused
from meshjwt.localmesh.control_plane import ControlPlane, Proxy
from meshjwt.localmesh.istiod import IstiodBehaviour, envoy_build_for, patch_of
from meshjwt.localmesh.jwks_fetch import FetchResult, http_get
from meshjwt.localmesh.jwks_resolver import JwksResolver
from meshjwt.localmesh.translate.network import static_cluster
from meshjwt.localmesh.validation import check
from meshjwt.localmesh.world import Service, Workload, World

KEYS = '{"keys":[]}'


class Server:
    """A fake *answer* sequence for the resolver's fetcher (the resolver is tested alone; the real HTTP path is
    tested below and by 07-jwks-lifecycle against real servers)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, uri: str, issuer: str, timeout: float) -> FetchResult:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return FetchResult(answer, None if answer is not None else "down")


def test_cache_outlives_translations_and_refresh_keeps_last_keys_on_failure() -> None:
    server = Server(KEYS, None)
    resolver = JwksResolver(server, refresh_interval=3600, retry_interval=0.001)
    assert resolver.get("iss", "http://x/jwks", 1.0) == (KEYS, None)
    assert resolver.get("iss", "http://x/jwks", 1.0) == (KEYS, None)
    assert server.calls == 1  # cached: a second translation does not fetch
    resolver.refresh()  # the server is down now
    assert resolver.get("iss", "http://x/jwks", 1.0) == (KEYS, None)


def test_refresh_pushes_only_on_change() -> None:
    pushes: list[int] = []
    server = Server(KEYS, KEYS, '{"keys":[{"kid":"new"}]}')
    resolver = JwksResolver(server, refresh_interval=3600, on_change=lambda: pushes.append(1))
    resolver.get("iss", "u", 1.0)
    resolver.refresh()
    assert pushes == []
    resolver.refresh()
    assert pushes == [1] and "new" in (resolver.get("iss", "u", 1.0)[0] or "")


def test_failed_first_fetch_is_retried_in_the_background_and_pushes() -> None:
    pushed = threading.Event()
    server = Server(None, None, KEYS)
    resolver = JwksResolver(server, refresh_interval=3600, retry_interval=0.01, on_change=pushed.set)
    resolver.start()
    body, error = resolver.get("iss", "u", 1.0)
    assert body is None and error == "down"
    assert pushed.wait(5), "no background retry pushed"
    assert resolver.get("iss", "u", 1.0) == (KEYS, None)
    resolver.stop()


def test_non_jwks_body_per_version() -> None:
    inline = JwksResolver(Server("<html/>"), accept_non_jwks=True)
    assert inline.get("iss", "u", 1.0)[0] == "<html/>"
    strict = JwksResolver(Server("<html/>"), accept_non_jwks=False)
    assert strict.get("iss", "u", 1.0) == (None, "u did not return a JWKS")


def test_await_refresh_times_out_without_a_refresher() -> None:
    assert JwksResolver(Server(KEYS), refresh_interval=3600).await_refresh(0.05) is False


def test_a_refresh_due_now_runs_at_once() -> None:
    server = Server(KEYS)
    resolver = JwksResolver(server, refresh_interval=3600)
    resolver.get("iss", "u", 1.0)
    resolver.start()
    try:
        assert resolver.await_refresh(5, now=True)  # an hour's interval, yet the next cycle runs now
        assert resolver.refreshes == 1 and server.calls == 2
    finally:
        resolver.stop()


def test_a_cycle_under_way_when_asked_does_not_count() -> None:
    in_cycle, release, calls = threading.Event(), threading.Event(), []

    def server(uri: str, issuer: str, timeout: float) -> FetchResult:
        calls.append(uri)
        if len(calls) == 2:  # the cycle under way: held until released
            in_cycle.set()
            release.wait(5)
        return FetchResult(KEYS, None)

    resolver = JwksResolver(server, refresh_interval=3600)
    resolver.get("iss", "u", 1.0)
    threading.Thread(target=resolver.refresh, daemon=True).start()
    assert in_cycle.wait(5)
    resolver.start()
    answered: list[tuple[bool, int]] = []
    waiter = threading.Thread(target=lambda: answered.append((resolver.await_refresh(5, now=True), len(calls))))
    waiter.start()
    release.set()
    waiter.join(10)
    resolver.stop()
    assert answered == [(True, 3)]  # it returned after a cycle that started after the question


@pytest.mark.parametrize(("version", "substitute"), [
    ("1.20", "fake-abc"), ("1.21.0", "leaked"), ("1.27.7", "leaked"), ("1.27", "public-only"),
    ("1.28.4", "leaked"), ("1.28", "public-only"), ("1.29.0", "leaked"), ("1.29", "public-only"),
    ("1.30", "public-only"), ("1.24", "leaked"),
])  # fmt: skip
def test_substitute_key_set_by_version(version: str, substitute: str) -> None:
    assert IstiodBehaviour.for_version(version).substitute == substitute


def test_a_minor_means_its_latest_patch_and_its_envoy() -> None:
    assert patch_of("1.28") == (1, 28, 5)
    assert envoy_build_for("1.28").startswith("1.36.") and envoy_build_for("1.28.4").startswith("1.36.")
    assert envoy_build_for("1.30").startswith("1.38.")
    assert IstiodBehaviour.for_version("1.30").non_jwks_body == "inline"


def test_webhook_refuses_with_istios_message() -> None:
    def ra(rule: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "RequestAuthentication", "metadata": {"name": "r", "namespace": "foo"},
                "spec": {"jwtRules": [rule]}}  # fmt: skip

    with pytest.raises(ApplyRefused, match="issuer or jwksUri must be non-empty string"):
        check(ra({"audiences": ["a"]}))
    with pytest.raises(ApplyRefused, match="jwks parse error"):
        check(ra({"issuer": "i", "jwks": "not json"}))
    with pytest.raises(ApplyRefused, match="location header name must be non-empty string"):
        check(ra({"issuer": "i", "fromHeaders": [{"prefix": "x"}]}))
    check(ra({"issuer": "i", "jwksUri": "https://example.com/jwks"}))  # accepted


def test_hybrid_looks_up_the_host_only_and_keeps_the_uris_port() -> None:
    """istiod's model.LookupCluster: a registry host with the URI's port, even one no Service declares."""
    world = World(services=[Service("nginx-proxy", "foo", 80, 1)])
    httpbin = Workload("httpbin", "foo", {"app": "httpbin"}, "sidecar")
    clusters = [static_cluster("outbound|80||nginx-proxy.foo.svc.cluster.local", 1)]
    plane = ControlPlane(world, [Proxy(httpbin, 1, [])], clusters, ca_file="", substitute_jwks=KEYS)
    rule = {"issuer": "i", "jwksUri": "https://nginx-proxy.foo.svc.cluster.local/jwks"}
    ra = {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
          "metadata": {"name": "r", "namespace": "foo"}, "spec": {"jwtRules": [rule]}}  # fmt: skip
    translation = plane.translate([ra], "hybrid")
    provider = next(iter(translation.listeners[0]["filterChains"][0]["filters"][0]["typedConfig"]["httpFilters"][0]
                         ["typedConfig"]["providers"].values()))  # fmt: skip
    assert provider["remoteJwks"]["httpUri"]["cluster"] == "outbound|443||nginx-proxy.foo.svc.cluster.local"


class _Redirecting(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        hops = int(self.path.rsplit("/", 1)[-1])
        if hops:
            self.send_response(302)
            self.send_header("Location", f"/{hops - 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(203)  # any 2xx
        self.send_header("Content-Length", str(len(KEYS)))
        self.end_headers()
        self.wfile.write(KEYS.encode())

    def log_message(self, *_: Any) -> None:
        pass


def test_http_get_follows_up_to_ten_redirects_and_takes_any_2xx() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        world = World(external={("jwks.example.com", 80): server.server_address[1]})
        assert http_get(world, "http://jwks.example.com/10", "istio-system", 5, "").jwks == KEYS
        eleven = http_get(world, "http://jwks.example.com/11", "istio-system", 5, "")
        assert eleven.jwks is None and "10 redirects" in (eleven.error or "")
    finally:
        server.shutdown()
        server.server_close()


def test_space_delimited_claims_are_ignored_before_1_28() -> None:
    world = World(services=[Service("nginx-proxy", "foo", 80, 1)])
    httpbin = Workload("httpbin", "foo", {"app": "httpbin"}, "sidecar")
    rule = {"issuer": "i", "jwks": KEYS, "spaceDelimitedClaims": ["roles"]}
    ra = {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
          "metadata": {"name": "r", "namespace": "foo"}, "spec": {"jwtRules": [rule]}}  # fmt: skip
    claims = {}
    for version in ("1.27", "1.28"):
        honoured = IstiodBehaviour.for_version(version).space_delimited_claims
        plane = ControlPlane(world, [Proxy(httpbin, 1, [])], [], ca_file="", substitute_jwks=KEYS,
                             space_delimited_claims=honoured)  # fmt: skip
        translation = plane.translate([copy.deepcopy(ra)], "istiod")
        config = translation.listeners[0]["filterChains"][0]["filters"][0]["typedConfig"]["httpFilters"][0]
        provider = next(iter(config["typedConfig"]["providers"].values()))
        claims[version] = provider["normalizePayloadInMetadata"]["spaceDelimitedClaims"]
    assert claims == {"1.27": ["permission", "scope"], "1.28": ["permission", "roles", "scope"]}


@pytest.mark.integration
def test_an_envoy_build_pypi_lacks_is_one_line_and_leaves_no_cache_entry(tmp_path, monkeypatch) -> None:
    from meshjwt.errors import EnvironmentProblem
    from meshjwt.localmesh.envoy_builds import cached_envoy

    monkeypatch.setenv("MESHJWT_ENVOY_CACHE", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match=r"cannot fetch Envoy 0\.0\.1 .*--envoy-version installed") as info:
        cached_envoy("0.0.1", timeout=120)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
