"""RequestAuthentication → jwt_authn, workload selection, and the local world's DNS, as istiod does them."""

import re

import pytest

from meshjwt.errors import UnsupportedField
from meshjwt.keys import KeySet
from meshjwt.localmesh.envoy import validate_http_filters
from meshjwt.localmesh.translate.authn import build_jwt_filter, parse_duration
from meshjwt.localmesh.translate.selection import applies_to
from meshjwt.localmesh.world import Service, Workload, World

INLINE = {"localJwks": {"inlineString": '{"keys":[]}'}}
HTTPBIN = Workload("httpbin", "foo", {"app": "httpbin", "version": "v1"}, "sidecar")


def ra(name="ra", namespace="foo", selector=None, *rules):
    spec = {"jwtRules": list(rules)}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def test_single_issuer_requires_provider_or_missing():
    config = build_jwt_filter([ra("a", "foo", None, {"issuer": "iss-a"})], lambda r: INLINE)["typedConfig"]
    assert config["rules"] == [{"match": {"prefix": "/"}, "requires": {"requiresAny": {"requirements": [
        {"providerName": "origins-0"}, {"allowMissing": {}}]}}}]  # fmt: skip
    assert config["bypassCorsPreflight"] is True
    assert config["providers"]["origins-0"] == {
        "issuer": "iss-a", **INLINE, "payloadInMetadata": "payload",
        "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["permission", "scope"]},
    }  # fmt: skip


def test_several_issuers_are_sorted_and_combined_like_istiod():
    rules = [ra("b", "foo", None, {"issuer": "z-iss"}), ra("a", "foo", None, {"issuer": "a-iss"})]
    config = build_jwt_filter(rules, lambda r: INLINE)["typedConfig"]
    assert [config["providers"][f"origins-{i}"]["issuer"] for i in range(2)] == ["a-iss", "z-iss"]
    outer = config["rules"][0]["requires"]["requiresAny"]["requirements"]
    assert outer[:2] == [{"providerName": "origins-0"}, {"providerName": "origins-1"}]
    assert outer[2] == {"requiresAll": {"requirements": [
        {"requiresAny": {"requirements": [{"providerName": f"origins-{i}"}, {"allowMissing": {}}]}} for i in range(2)
    ]}}  # fmt: skip


def test_rule_fields_map_to_provider_fields():
    rule = {"issuer": "i", "audiences": ["a"], "forwardOriginalToken": True, "outputPayloadToHeader": "x-payload",
            "fromHeaders": [{"name": "x-jwt", "prefix": "Token "}, {"name": "x-raw"}], "fromParams": ["t"],
            "fromCookies": ["c"], "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
            "spaceDelimitedClaims": ["roles"]}  # fmt: skip
    provider = build_jwt_filter([ra("a", "foo", None, rule)], lambda r: INLINE)["typedConfig"]["providers"]["origins-0"]
    assert provider["audiences"] == ["a"] and provider["forward"] is True
    assert provider["forwardPayloadHeader"] == "x-payload"
    assert provider["fromHeaders"] == [{"name": "x-jwt", "valuePrefix": "Token "}, {"name": "x-raw"}]
    assert provider["fromParams"] == ["t"] and provider["fromCookies"] == ["c"]
    assert provider["claimToHeaders"] == [{"headerName": "x-sub", "claimName": "sub"}]
    assert provider["normalizePayloadInMetadata"]["spaceDelimitedClaims"] == ["permission", "roles", "scope"]


def test_no_rules_no_filter():
    assert build_jwt_filter([ra("a", "foo", None)], lambda r: INLINE) is None


@pytest.mark.parametrize(("rule", "field"), [({"issuer": "i", "jwtHeaders": []}, "spec.jwtRules[0].jwtHeaders")])
def test_unknown_rule_field_is_refused(rule, field):
    with pytest.raises(UnsupportedField, match=re.escape(f"RequestAuthentication foo/a: {field} is not supported")):
        build_jwt_filter([ra("a", "foo", None, rule)], lambda r: INLINE)


@pytest.mark.integration
def test_envoy_accepts_the_generated_filter():
    rules = [ra("a", "foo", None, {"issuer": "i1", "fromHeaders": [{"name": "x", "prefix": "B "}]}),
             ra("b", "foo", None, {"issuer": "i2", "audiences": ["x"]})]  # fmt: skip
    real_keys = {"localJwks": {"inlineString": KeySet(("ES256",)).jwks_json()}}  # Envoy refuses an empty JWKS
    jwt_filter = build_jwt_filter(rules, lambda r: real_keys)
    assert validate_http_filters([jwt_filter]) is None


@pytest.mark.parametrize(
    ("namespace", "selector", "workload", "applies"),
    [
        ("foo", None, HTTPBIN, True),  # namespace-wide
        ("bar", None, HTTPBIN, False),  # another namespace
        ("istio-system", None, HTTPBIN, True),  # root namespace: mesh-wide
        ("foo", {"app": "httpbin"}, HTTPBIN, True),
        ("foo", {"app": "other"}, HTTPBIN, False),
        ("istio-system", {"app": "httpbin"}, HTTPBIN, True),  # root namespace + selector: any namespace
        ("bar", {"app": "httpbin"}, HTTPBIN, False),
    ],
)
def test_selection_follows_istio_scoping(namespace, selector, workload, applies):
    assert applies_to(ra("a", namespace, selector), workload, "istio-system") is applies


def test_target_refs_are_refused():
    policy = ra("a")
    policy["spec"]["targetRefs"] = [{"kind": "Gateway", "name": "g"}]
    with pytest.raises(UnsupportedField, match="spec.targetRefs is not supported"):
        applies_to(policy, HTTPBIN, "istio-system")


def test_world_dns_uses_the_namespace_search_path():
    world = World(services=[Service("nginx-proxy", "foo", 80, 1234)], external={("jwks.example", 443): 99})
    assert world.resolve("nginx-proxy", 80, "foo") == 1234
    assert world.resolve("nginx-proxy", 80, "istio-system") is None  # istiod's namespace: no such Service
    assert world.resolve("nginx-proxy.foo", 80, "istio-system") == 1234
    assert world.resolve("nginx-proxy.foo.svc.cluster.local", 80, "bar") == 1234
    assert world.resolve("nginx-proxy.foo", 8080, "foo") is None
    assert world.resolve("JWKS.example", 443, "foo") == 99
    assert world.resolve("unknown.example.com", 443, "foo") is None


def test_durations():
    assert parse_duration(None) == 5.0 and parse_duration("500ms") == 0.5 and parse_duration("2s") == 2.0
    with pytest.raises(UnsupportedField):
        parse_duration("soon")
