"""RequestAuthentication → jwt_authn against Istio's own expectations (policy_applier_test.go).

The cases are transcribed by hand in ``tests/data/istio_jwt_authn_golden.yaml`` (input → the filter config
istiod must emit). Each runs through the local istiod (:class:`ControlPlane`: JWKS fetch modes, cluster
lookup, istiod-side fetch from a real HTTP server of this test, substitute keys) and the translator, and
is compared field by field. A transcription check keeps the data honest against the Go file: the same
case names, and every string literal of a Go case present in its transcription.
"""

from __future__ import annotations

import copy
import http.server
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from istio_golden import assert_same, need

from meshjwt.keys import KeySet
from meshjwt.localmesh.control_plane import ControlPlane, Proxy
from meshjwt.localmesh.envoy import validate_http_filters
from meshjwt.localmesh.translate.authn import JWT_FILTER, JWT_TYPE, build_jwt_filter, jwt_authn_config
from meshjwt.localmesh.translate.authn import space_delimited_claims as build_space_delimited_claims
from meshjwt.localmesh.translate.network import static_cluster
from meshjwt.localmesh.world import Workload, World

#: Istio's Go test, under the golden folder: only the transcription check reads it (the rest runs on tests/data/)
GO_TEST = "authn/policy_applier_test.go"
DATA = yaml.safe_load((Path(__file__).parent / "data" / "istio_jwt_authn_golden.yaml").read_text())
GO_FUNCTIONS = ("TestJwtFilter", "TestConvertToEnvoyJwtConfig", "TestBuildSpaceDelimitedClaims")

JWKS_HOST = "jwks.golden.test"  # cluster-external host of the local world, served by this test's server
PUBLIC_ONLY_JWKS = '{"keys":[{"kty":"RSA","kid":"public-only","n":"sXch","e":"AQAB"}]}'
HTTPBIN = Workload("httpbin", "foo", {"app": "httpbin"}, "sidecar")
FQDN_URI = "http://jwt-token-issuer.mesh.svc.cluster.local:7443/jwks"
#: cases the local mesh reproduces only after an explicit rewrite: name -> (reason, text -> replacement)
DEPARTURES = {
    name: (
        "the Go test seeds istiod's service index with the short host jwt-token-issuer.mesh, which a real "
        "registry (and the local mesh's) keys only by the FQDN; checked with the FQDN in the jwksUri instead",
        {"http://jwt-token-issuer.mesh:7443/jwks": FQDN_URI},
    )
    for name in (
        "JWT policy with Mesh cluster as issuer and remote jwks mode Hybrid",
        "JWT policy with Mesh cluster as issuer and remote jwks mode Envoy",
    )
}


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        found = self.path == "/oauth2/v3/certs"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body if found else b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served_jwks() -> Iterator[tuple[str, int]]:
    """A real JWKS server on loopback serving a key set minted for this run: (the JWKS text, its port)."""
    jwks = KeySet(("RS256",)).jwks_json()
    handler = type("Handler", (_JwksHandler,), {"body": jwks.encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield jwks, server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def control_plane(served_jwks: tuple[str, int]) -> ControlPlane:
    """The local istiod for one sidecar, with DATA's registry as its known clusters."""
    world = World(workloads=[HTTPBIN], external={(JWKS_HOST, 80): served_jwks[1]})
    registry = [static_cluster(f"outbound|7443||{entry['service']}", None) for entry in DATA["registry"]]
    return ControlPlane(world, [Proxy(HTTPBIN, 1, [])], registry, ca_file="", substitute_jwks=PUBLIC_ONLY_JWKS)


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    """``node`` with each ``${NAME}`` and each departure text replaced."""
    if isinstance(node, list):
        return [_fill(n, values) for n in node]
    if isinstance(node, dict):
        return {_fill(k, values): _fill(v, values) for k, v in node.items()}
    if isinstance(node, str):
        for old, new in values.items():
            node = node.replace(old, new)
    return node


def _case(case: Mapping[str, Any], jwks: str) -> dict[str, Any]:
    values = {"${JWKS_URI}": f"http://{JWKS_HOST}/oauth2/v3/certs", "${JWT_PUB_KEY_1}": jwks,
              "${JWT_PUB_KEY_2}": jwks, "${PUBLIC_ONLY_JWKS}": PUBLIC_ONLY_JWKS}  # fmt: skip
    values |= DEPARTURES.get(case["name"], ("", {}))[1]
    return _fill(copy.deepcopy(dict(case)), values)


def _ra(i: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": f"ra-{i}", "namespace": "foo"}, "spec": dict(spec)}  # fmt: skip


def _jwt_filter(cp: ControlPlane, specs: list[dict[str, Any]], mode: str = "istiod") -> dict[str, Any] | None:
    """What the local istiod puts on the sidecar for these RequestAuthentication specs."""
    (listener,) = cp.translate([_ra(i, s) for i, s in enumerate(specs)], mode).listeners
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    found = [f for f in hcm["httpFilters"] if f["name"] == JWT_FILTER]
    assert len(found) <= 1
    return found[0] if found else None


def _jwks_by_issuer(jwt_filter: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Issuer -> the JWKS source (localJwks or remoteJwks) the local istiod chose for its provider."""
    providers = jwt_filter["typedConfig"]["providers"].values() if jwt_filter else []
    return {p["issuer"]: {k: v for k, v in p.items() if k in ("localJwks", "remoteJwks")} for p in providers}


def _ids(function: str) -> list[str]:
    return [case["name"] for case in DATA[function]]


@pytest.mark.parametrize("case", DATA["TestJwtFilter"], ids=_ids("TestJwtFilter"))
def test_jwt_filter(case: dict[str, Any], control_plane: ControlPlane, served_jwks: tuple[str, int]) -> None:
    case = _case(case, served_jwks[0])
    got = _jwt_filter(control_plane, case["in"], case.get("jwksFetchMode", "istiod"))
    assert_same(got, case["expected"], f"TestJwtFilter/{case['name']}")


@pytest.mark.parametrize("case", DATA["TestConvertToEnvoyJwtConfig"], ids=_ids("TestConvertToEnvoyJwtConfig"))
def test_convert_to_envoy_jwt_config(
    case: dict[str, Any], control_plane: ControlPlane, served_jwks: tuple[str, int]
) -> None:
    """convertToEnvoyJwtConfig keeps the rules' order; the JWKS each provider gets comes from the local istiod."""
    case = _case(case, served_jwks[0])
    sources = _jwks_by_issuer(_jwt_filter(control_plane, [{"jwtRules": case["in"]}]))
    got = jwt_authn_config(case["in"], lambda rule: sources[rule["issuer"]])
    if got is not None:
        assert got.pop("@type") == JWT_TYPE
    assert_same(got, case["expected"], f"TestConvertToEnvoyJwtConfig/{case['name']}")


@pytest.mark.parametrize("case", DATA["TestBuildSpaceDelimitedClaims"], ids=_ids("TestBuildSpaceDelimitedClaims"))
def test_build_space_delimited_claims(case: dict[str, Any]) -> None:
    assert build_space_delimited_claims(case["in"]) == case["expected"]


def _with_clear_route_cache(node: Any) -> Any:
    """The expected filter for a gateway: every provider also ``clearRouteCache: true``."""
    node = copy.deepcopy(node)
    for provider in node["typedConfig"]["providers"].values():
        provider["clearRouteCache"] = True
    return node


_FILTERS = [c for c in DATA["TestJwtFilter"] if c["expected"]]


@pytest.mark.parametrize("case", _FILTERS, ids=[c["name"] for c in _FILTERS])
def test_jwt_filter_for_a_gateway(case: dict[str, Any], control_plane: ControlPlane, served_jwks: Any) -> None:
    """Derived, not in the Go test (which runs ``JwtFilter(false)``): istiod's JwtFilter(clearRouteCache=true)
    for gateways sets ``clear_route_cache`` on every provider and changes nothing else (policy_applier.go)."""
    case = _case(case, served_jwks[0])
    sidecar = _jwt_filter(control_plane, case["in"], case.get("jwksFetchMode", "istiod"))
    sources = _jwks_by_issuer(sidecar)
    got = build_jwt_filter(
        [_ra(i, s) for i, s in enumerate(case["in"])], lambda rule: sources[rule["issuer"]], clear_route_cache=True
    )
    assert_same(got, _with_clear_route_cache(case["expected"]), f"gateway TestJwtFilter/{case['name']}")


@pytest.mark.integration
def test_envoy_accepts_a_gateway_filter(served_jwks: tuple[str, int]) -> None:
    rules = [{"issuer": "a", "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}]}, {"issuer": "b"}]
    keys = {"localJwks": {"inlineString": served_jwks[0]}}
    jwt_filter = build_jwt_filter([_ra(0, {"jwtRules": rules})], lambda rule: keys, clear_route_cache=True)
    assert validate_http_filters([jwt_filter]) is None


def test_the_local_gateway_gets_clear_route_cache(served_jwks: tuple[str, int]) -> None:
    gateway = Workload("istio-ingressgateway", "istio-system", {"istio": "ingressgateway"}, "gateway")
    cp = ControlPlane(World(workloads=[gateway]), [Proxy(gateway, 1, [])], [], "", PUBLIC_ONLY_JWKS)
    ra = _ra(0, {"jwtRules": [{"issuer": "a", "jwks": served_jwks[0]}]})
    ra["metadata"]["namespace"] = "istio-system"
    (listener,) = cp.translate([ra]).listeners
    filters = listener["filterChains"][0]["filters"][0]["typedConfig"]["httpFilters"]
    assert filters[0]["typedConfig"]["providers"]["origins-0"].get("clearRouteCache") is True


def _go_cases(function: str) -> dict[str, str]:
    """The case blocks of one Go test function: name -> its source text."""
    text = need(GO_TEST).read_text()
    start = text.index(f"func {function}(")
    end = text.find("\nfunc ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    starts = list(re.finditer(r'^\t\t\{\n\t\t\tname: +"([^"]+)"', body, re.M))
    ends = [m.start() for m in starts[1:]] + [body.index("\n\t}\n", starts[-1].start())]
    return {m[1]: body[m.start() : end] for m, end in zip(starts, ends, strict=True)}


def _strings(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_strings(n) for n in node)) if node else set()
    if isinstance(node, dict):
        return set(map(str, node)) | (set().union(*(_strings(v) for v in node.values())) if node else set())
    return {str(node)} if node is not None else set()


@pytest.mark.parametrize("function", GO_FUNCTIONS)
def test_transcription_covers_the_go_cases(function: str) -> None:
    """Same cases as the Go test, and each Go string literal of a case appears in its transcription."""
    go = _go_cases(function)
    assert list(go) == _ids(function)
    for case in DATA[function]:
        literals = set(re.findall(r'"((?:[^"\\]|\\.)*)"', go[case["name"]]))
        missing = literals - _strings(case) - {""}
        assert not missing, f"{function}/{case['name']}: not transcribed: {sorted(missing)}"


def test_departures_are_listed_cases() -> None:
    assert set(DEPARTURES) <= set(_ids("TestJwtFilter")) and all(reason for reason, _ in DEPARTURES.values())


SHORT_URI = "http://jwt-token-issuer.mesh:7443/jwks"
SHORT_REMOTE = {"uri": SHORT_URI, "cluster": "outbound|7443||jwt-token-issuer.mesh", "timeout": "5s"}


@pytest.mark.parametrize(("mode", "source"), [
    ("hybrid", {"localJwks": {"inlineString": PUBLIC_ONLY_JWKS}}),  # no registry host: istiod fetches (and fails)
    ("envoy", {"remoteJwks": {"httpUri": SHORT_REMOTE, "cacheDuration": "300s"}}),
])  # fmt: skip
def test_short_host_without_an_index_entry(mode: str, source: dict[str, Any], control_plane: ControlPlane) -> None:
    """What the departed cases' own jwksUri gives on a registry keyed by FQDN (istiod's LookupCluster misses)."""
    rule = {"issuer": "mesh cluster", "jwksUri": SHORT_URI}
    assert _jwks_by_issuer(_jwt_filter(control_plane, [{"jwtRules": [rule]}], mode)) == {"mesh cluster": source}
