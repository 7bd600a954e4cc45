"""The local reference mesh on a real Envoy: behaviours beyond the FAQ scenarios, refusals, start failures."""

import json
import socket

import pytest

from meshjwt.errors import EnvironmentProblem, UnsupportedField
from meshjwt.keys import KeySet
from meshjwt.localmesh.ports import is_listening
from meshjwt.mesh import Request
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets.local import LocalMesh, LocalOptions
from meshjwt.tokens import TokenFactory

SETTINGS = Settings(timeouts=Timeouts.of(LocalMesh.default_timeouts))


@pytest.fixture(scope="module")
def keys():
    return KeySet(("RS256", "ES256"))


@pytest.fixture(scope="module")
def mesh(keys):
    instance = LocalMesh(SETTINGS, keys.jwks_json())
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def tokens(keys):
    return TokenFactory(keys)


def ra(name, rule, namespace="foo", selector=None):
    spec = {"selector": {"matchLabels": selector or {"app": "httpbin"}}, "jwtRules": [rule]}
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def get(mesh, token=None, **kwargs):
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return mesh.request(Request(headers=headers, **kwargs))


@pytest.mark.integration
def test_two_issuers_each_accepted_and_invalid_tokens_refused(mesh, keys):
    jwks = keys.jwks_json()
    mesh.apply([ra("a", {"issuer": "issuer-a", "jwks": jwks}), ra("b", {"issuer": "issuer-b", "jwks": jwks})])
    a, b = TokenFactory(keys, "issuer-a"), TokenFactory(keys, "issuer-b")
    assert get(mesh, a.valid()).status == 200
    assert get(mesh, b.valid("ES256")).status == 200
    assert get(mesh).status == 200
    refused = get(mesh, b.expired())
    assert (refused.status, refused.body) == (401, "Jwt is expired")
    assert get(mesh, TokenFactory(keys, "issuer-c").valid()).body == "Jwt issuer is not configured"


@pytest.mark.integration
def test_token_header_is_removed_unless_forwarded_and_claims_become_headers(mesh, keys, tokens):
    rule = {"issuer": tokens.issuer, "jwks": keys.jwks_json(), "outputClaimToHeaders": [{"header": "x-jwt-foo",
            "claim": "foo"}]}  # fmt: skip
    mesh.apply([ra("a", rule)])
    seen = json.loads(get(mesh, tokens.valid(claims={"foo": "bar"})).body)["headers"]
    assert "Authorization" not in seen, "the token header goes no further than the sidecar by default"
    assert seen["X-Jwt-Foo"] in ("bar", ["bar"])
    mesh.apply([ra("a", {**rule, "forwardOriginalToken": True})])
    assert "Authorization" in json.loads(get(mesh, tokens.valid()).body)["headers"]


@pytest.mark.integration
def test_cors_preflight_skips_jwt_even_with_an_expired_token(mesh, keys, tokens):
    mesh.apply([ra("a", {"issuer": tokens.issuer, "jwks": keys.jwks_json()})])
    preflight = {"Origin": "http://example.com", "Access-Control-Request-Method": "GET"}
    assert get(mesh, tokens.expired(), method="OPTIONS", headers=preflight).status != 401
    assert get(mesh, tokens.expired(), method="OPTIONS").status == 401


@pytest.mark.integration
def test_custom_token_location(mesh, keys, tokens):
    rule = {"issuer": tokens.issuer, "jwks": keys.jwks_json(), "fromHeaders": [{"name": "x-jwt", "prefix": "Tok "}]}
    mesh.apply([ra("a", rule)])
    assert get(mesh, headers={"x-jwt": f"Tok {tokens.expired()}"}).status == 401
    assert get(mesh, headers={"x-jwt": f"Tok {tokens.valid()}"}).status == 200
    assert get(mesh, tokens.expired()).status == 200, "Authorization is no longer a token location"


@pytest.mark.integration
def test_unreachable_jwks_uri_in_istiod_mode_refuses_every_token(mesh, tokens):
    mesh.apply([ra("a", {"issuer": tokens.issuer, "jwksUri": "http://nowhere.invalid/jwks"})])
    assert (get(mesh, tokens.valid()).status, get(mesh).status) == (401, 200)
    assert any("could not fetch" in note for note in mesh.last.notes)


@pytest.mark.integration
def test_gateway_policy_does_not_touch_the_sidecar(mesh, keys, tokens):
    gateway_ra = ra("gw", {"issuer": tokens.issuer, "jwks": keys.jwks_json()}, "istio-system",
                    {"app": "istio-ingressgateway"})  # fmt: skip
    mesh.apply([gateway_ra])
    assert get(mesh, tokens.expired()).status == 200
    assert get(mesh, tokens.expired(), client="ingress", path="/productpage").status == 401


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "p"}},
         "the local mesh models only"),
        ({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "p",
          "namespace": "foo"}, "spec": {"rules": [{"from": [{"source": {"principals": ["x"]}}]}]}},
         "source.principals is not supported"),
        ({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "p",
          "namespace": "foo"}, "spec": {"selector": {"matchLabels": {"app": "sleep"}}}},
         "runs without a proxy"),
        ({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "d",
          "namespace": "foo"}, "spec": {"host": "h", "trafficPolicy": {"loadBalancer": {}}}},
         "spec.trafficPolicy.loadBalancer is not supported"),
        ({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "s", "namespace": "foo"},
          "spec": {"hosts": ["jwks.meshjwt.test"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}},
         None),
    ],
)  # fmt: skip
@pytest.mark.integration
def test_unsupported_input_is_refused_naming_it_and_keeps_the_previous_config(mesh, tokens, keys, resource, message):
    mesh.apply([ra("a", {"issuer": tokens.issuer, "jwks": keys.jwks_json()})])
    if message is None:  # a ServiceEntry whose DestinationRule names a Secret the local mesh lacks
        tls = {"mode": "SIMPLE", "credentialName": "no-such-secret"}
        dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "d",
              "namespace": "foo"}, "spec": {"host": "jwks.meshjwt.test", "trafficPolicy": {"tls": tls}}}  # fmt: skip
        resource, message = [resource, dr], "credentialName 'no-such-secret' names a Secret the local mesh does not"
    with pytest.raises(UnsupportedField, match=message) as error:
        mesh.apply(resource if isinstance(resource, list) else [resource])
    assert "\n" not in str(error.value)
    assert get(mesh, tokens.expired()).status == 401, "a refused apply leaves the previous configuration"


def test_port_in_use_is_one_line_and_nothing_is_left(keys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        mesh = LocalMesh(Settings(target_options=LocalOptions(local_gateway_port=port)), keys.jwks_json())
        with pytest.raises(EnvironmentProblem, match=f"port 127.0.0.1:{port} for the local gateway listener"):
            mesh.start()
    assert mesh.envoy is None and mesh.workloads is None


def test_missing_envoy_binary_is_one_line(keys):
    mesh = LocalMesh(Settings(target_options=LocalOptions(envoy_path="/nonexistent/envoy")), keys.jwks_json())
    with pytest.raises(EnvironmentProblem, match="envoy binary '/nonexistent/envoy' does not exist"):
        mesh.start()


@pytest.mark.integration
def test_stop_releases_processes_and_ports(keys):
    mesh = LocalMesh(SETTINGS, keys.jwks_json())
    mesh.start()
    envoy, workloads = mesh.envoy.proc, mesh.workloads
    ports = [p for name, p in mesh.ports.items()]
    assert all(is_listening(p) for p in ports)
    assert oct(mesh.workdir.stat().st_mode & 0o777) == "0o700"
    assert not (mesh.workdir / "pki" / "server-key.pem").exists(), "the workloads hold the key: off the disk"
    mesh.stop()
    mesh.stop()  # idempotent
    assert envoy.poll() is not None and workloads.poll() is not None
    assert not any(is_listening(p) for p in ports)
    assert not mesh.workdir.exists()


@pytest.mark.integration
def test_a_new_policy_governs_the_very_next_request(mesh, keys, tokens):
    """No polling: after apply() returns, the first request already sees the new configuration,
    also on a client connection that was opened (and used) before the change."""
    import http.client

    expired = {"Host": "httpbin.foo:8000", "Authorization": f"Bearer {tokens.expired()}"}
    port = mesh.ports["listener:sidecar"]
    for _ in range(20):
        mesh.apply([])
        old = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        old.request("GET", "/headers", headers=expired)
        first = old.getresponse()
        first.read()
        assert first.status == 200
        mesh.apply([ra("a", {"issuer": tokens.issuer, "jwks": keys.jwks_json()})])
        assert get(mesh, tokens.expired()).status == 401
        try:  # the pre-change connection is drained: closed, or served by the new configuration
            old.request("GET", "/headers", headers=expired)
            assert old.getresponse().status == 401
        except (ConnectionError, http.client.HTTPException):
            pass
        finally:
            old.close()


@pytest.mark.integration
def test_a_config_envoy_refuses_leaves_the_last_good_one(mesh, keys, tokens, monkeypatch):
    from meshjwt.localmesh.envoy import ConfigRejected

    mesh.apply([ra("a", {"issuer": tokens.issuer, "jwks": keys.jwks_json()})])
    good = mesh.control_plane.translate([ra("a", {"issuer": tokens.issuer, "jwks": keys.jwks_json()})])
    broken = good.listeners[0]["filterChains"][0]["filters"][0]["typedConfig"]
    broken.pop("routeConfig")  # Envoy requires a route specifier: it rejects this listener
    good.clusters.append({"name": "extra", "type": "STATIC", "connectTimeout": "1s"})  # CDS itself is fine
    monkeypatch.setattr(mesh.control_plane, "translate", lambda resources, mode="istiod": good)
    with pytest.raises(ConfigRejected, match="route_specifier"):
        mesh.apply([])
    monkeypatch.undo()
    assert get(mesh, tokens.expired()).status == 401, "the RequestAuthentication still applies"
    assert "extra" not in {c["name"] for c in mesh.envoy.last_config["clusters"]}, "clusters were put back"
