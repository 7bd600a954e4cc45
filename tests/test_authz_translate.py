"""Focused tests of the AuthorizationPolicy → Envoy RBAC translator (istiod's builder semantics)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshjwt.errors import ConfigError, UnsupportedField
from meshjwt.localmesh.envoy import validate_http_filters
from meshjwt.localmesh.translate.authz import RBAC_TYPE, build_rbac_filters, path_normalization

ANY_STRING = {"safeRegex": {"regex": ".+"}}


def policy(
    spec: dict[str, Any], name: str = "p", namespace: str = "foo", dry_run: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if dry_run is not None:
        meta["annotations"] = {"istio.io/dry-run": dry_run}
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta,
        "spec": spec,
    }


def claim(name: str, string_match: dict[str, Any]) -> dict[str, Any]:
    path = [{"key": "payload"}, {"key": name}]
    return {
        "metadata": {
            "filter": "envoy.filters.http.jwt_authn",
            "path": path,
            "value": {"stringMatch": string_match},
        }
    }


def iss_sub(iss: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    return {"andIds": {"ids": [claim("iss", iss), claim("sub", sub)]}}


def only_policy(filters: list[dict[str, Any]], key: str = "rules") -> dict[str, Any]:
    (filt,) = filters
    (entry,) = filt["typedConfig"][key]["policies"].values()
    return entry


def principal_ids(spec: dict[str, Any]) -> list[dict[str, Any]]:
    (principal,) = only_policy(build_rbac_filters([policy(spec)]))["principals"]
    return principal["andIds"]["ids"]


def test_faq_deny_test_exclude() -> None:
    """istio.io FAQ: deny requests without a valid JWT except to /productpage at the ingress gateway."""
    faq = policy(
        {
            "selector": {"matchLabels": {"app": "istio-ingressgateway"}},
            "action": "DENY",
            "rules": [
                {
                    "from": [{"source": {"notRequestPrincipals": ["*"]}}],
                    "to": [{"operation": {"notPaths": ["/productpage"]}}],
                }
            ],
        },
        name="test-exclude",
        namespace="istio-system",
    )
    assert build_rbac_filters([faq]) == [
        {
            "name": "envoy.filters.http.rbac",
            "typedConfig": {
                "@type": RBAC_TYPE,
                "rules": {
                    "action": "DENY",
                    "policies": {
                        "ns[istio-system]-policy[test-exclude]-rule[0]": {
                            "permissions": [
                                {
                                    "andRules": {
                                        "rules": [
                                            {
                                                "notRule": {
                                                    "orRules": {
                                                        "rules": [
                                                            {"urlPath": {"path": {"exact": "/productpage"}}}
                                                        ]
                                                    }
                                                }
                                            }
                                        ]
                                    }
                                }
                            ],
                            "principals": [{"andIds": {"ids": [{"notId": iss_sub(ANY_STRING, ANY_STRING)}]}}],
                        }
                    },
                },
                "shadowRulesStatPrefix": "istio_dry_run_allow_",
            },
        }
    ]


def test_allow_any_request_principal() -> None:
    spec = {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}
    (filt,) = build_rbac_filters([policy(spec, name="require-jwt")])
    assert filt["typedConfig"]["rules"] == {
        "policies": {
            "ns[foo]-policy[require-jwt]-rule[0]": {
                "permissions": [{"andRules": {"rules": [{"any": True}]}}],
                "principals": [{"andIds": {"ids": [iss_sub(ANY_STRING, ANY_STRING)]}}],
            }
        }
    }  # ALLOW is the default RBAC action: no "action" key, as in istiod's output


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("https://idp.example.com/p/user@x", {"exact": "https://idp.example.com/p"}, {"exact": "user@x"}),
        ("testing@secure.istio.io/testing@secure.istio.io", {"exact": "testing@secure.istio.io"},
         {"exact": "testing@secure.istio.io"}),
        ("no-slash", {"exact": "no-slash"}, {"exact": ""}),
        ("*/sub", ANY_STRING, {"exact": "sub"}),
        ("*.example.com/sub", {"suffix": ".example.com"}, {"exact": "sub"}),
        ("*-suffix", ANY_STRING, {"suffix": "-suffix"}),
        ("iss/*", {"exact": "iss"}, ANY_STRING),
        ("iss/pre*", {"exact": "iss"}, {"prefix": "pre"}),
        ("prefix-*", {"prefix": "prefix-"}, ANY_STRING),
    ],
)  # fmt: skip
def test_request_principal_split_at_last_slash(value: str, iss: dict[str, Any], sub: dict[str, Any]) -> None:
    assert principal_ids({"rules": [{"from": [{"source": {"requestPrincipals": [value]}}]}]}) == [
        iss_sub(iss, sub)
    ]


def test_several_request_principals_are_ored_and_not_values_negated() -> None:
    source = {"requestPrincipals": ["a/b", "c/d"], "notRequestPrincipals": ["x/y"]}
    assert principal_ids({"rules": [{"from": [{"source": source}]}]}) == [
        {
            "orIds": {
                "ids": [iss_sub({"exact": "a"}, {"exact": "b"}), iss_sub({"exact": "c"}, {"exact": "d"})]
            }
        },
        {"notId": iss_sub({"exact": "x"}, {"exact": "y"})},
    ]


def claim_list(path: list[str], any_value: dict[str, Any]) -> dict[str, Any]:
    value = {"orMatch": {"valueMatchers": [{"listMatch": {"oneOf": any_value}}, copy.deepcopy(any_value)]}}
    keys = [{"key": k} for k in ("payload", *path)]
    return {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": keys, "value": value}}


def test_claim_conditions() -> None:
    when = [
        {"key": "request.auth.claims[groups]", "values": ["admin"]},
        {"key": "request.auth.claims[nested][role]", "values": ["a*", "*b"], "notValues": ["*"]},
        {"key": "request.auth.claims[dotted.name]", "values": ["x"]},
        {"key": "request.auth.audiences", "values": ["aud1"]},
        {"key": "request.auth.presenter", "notValues": ["bad"]},
        {"key": "request.auth.principal", "values": ["iss/sub"]},
        {"key": "request.headers[X-Tenant]", "values": ["t1", "*"], "notValues": ["t2"]},
    ]
    one = lambda m: {"stringMatch": m}  # noqa: E731
    any_of = lambda *ms: {"orMatch": {"valueMatchers": [one(m) for m in ms]}}  # noqa: E731
    assert principal_ids({"rules": [{"when": when}]}) == [
        claim_list(["groups"], one({"exact": "admin"})),
        claim_list(["nested", "role"], any_of({"prefix": "a"}, {"suffix": "b"})),
        {"notId": claim_list(["nested", "role"], one(ANY_STRING))},
        claim_list(["dotted.name"], one({"exact": "x"})),
        claim_list(["aud"], one({"exact": "aud1"})),
        {"notId": claim_list(["azp"], one({"exact": "bad"}))},
        iss_sub({"exact": "iss"}, {"exact": "sub"}),
        {"orIds": {"ids": [
            {"header": {"name": "X-Tenant", "stringMatch": {"exact": "t1"}}},
            {"header": {"name": "X-Tenant", "presentMatch": True}},
        ]}},
        {"notId": {"orIds": {"ids": [{"header": {"name": "X-Tenant", "stringMatch": {"exact": "t2"}}}]}}},
    ]  # fmt: skip


def test_rule_combination_from_to_when() -> None:
    """from entries OR-ed, to entries OR-ed; when conditions are AND-ed into every from entry."""
    rule = {
        "from": [{"source": {"requestPrincipals": ["a/b"]}}, {"source": {"notRequestPrincipals": ["*"]}}],
        "to": [
            {"operation": {"methods": ["GET"], "hosts": ["*.example.com"]}},
            {"operation": {"paths": ["/x/{*}"]}},
        ],
        "when": [{"key": "request.auth.claims[scope]", "values": ["read"]}],
    }
    spec = {"action": "AUDIT", "rules": [{}, rule]}
    (filt,) = build_rbac_filters([policy(spec)])
    rules = filt["typedConfig"]["rules"]
    assert rules["action"] == "LOG" and list(rules["policies"]) == [
        "ns[foo]-policy[p]-rule[0]",
        "ns[foo]-policy[p]-rule[1]",
    ]
    assert rules["policies"]["ns[foo]-policy[p]-rule[0]"] == {
        "permissions": [{"andRules": {"rules": [{"any": True}]}}],
        "principals": [{"andIds": {"ids": [{"any": True}]}}],
    }
    scope = claim_list(["scope"], {"stringMatch": {"exact": "read"}})
    host = {"suffix": ".example.com", "ignoreCase": True}
    template = {"name": "uri-template", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
        "pathTemplate": "/x/*"}}  # fmt: skip
    assert rules["policies"]["ns[foo]-policy[p]-rule[1]"] == {
        "permissions": [
            {"andRules": {"rules": [
                {"orRules": {"rules": [{"header": {"name": ":authority", "stringMatch": host}}]}},
                {"orRules": {"rules": [{"header": {"name": ":method", "stringMatch": {"exact": "GET"}}}]}},
            ]}},
            {"andRules": {"rules": [{"orRules": {"rules": [{"uriTemplate": template}]}}]}},
        ],
        "principals": [
            {"andIds": {"ids": [iss_sub({"exact": "a"}, {"exact": "b"}), scope]}},
            {"andIds": {"ids": [{"notId": iss_sub(ANY_STRING, ANY_STRING)}, scope]}},
        ],
    }  # fmt: skip
    # istiod sets the ALLOW dry-run stat prefix even when there are no shadow rules
    assert filt["typedConfig"]["shadowRulesStatPrefix"] == "istio_dry_run_allow_"


def test_filter_order_and_only_present_actions() -> None:
    allow = policy({"rules": [{}]}, name="a")
    deny = policy({"action": "DENY", "rules": [{}]}, name="d")
    audit = policy({"action": "AUDIT", "rules": [{}]}, name="l")

    def actions(policies: list[dict[str, Any]]) -> list[str]:
        return [f["typedConfig"]["rules"].get("action", "ALLOW") for f in build_rbac_filters(policies)]

    assert actions([allow, deny, audit]) == ["LOG", "DENY", "ALLOW"]
    assert actions([allow]) == ["ALLOW"]
    assert actions([]) == []


def test_empty_spec_denies_everything() -> None:
    """``spec: {}`` is an ALLOW policy that matches nothing: with an ALLOW filter present, all is denied."""
    assert only_policy(build_rbac_filters([policy({})])) == {
        "permissions": [{"notRule": {"any": True}}],
        "principals": [{"notId": {"any": True}}],
    }


def test_dry_run() -> None:
    deny = policy({"action": "DENY", "rules": [{}]}, name="d", dry_run="true")
    allow = policy({"rules": [{}]}, name="a", dry_run="false")
    audit = policy({"action": "AUDIT", "rules": [{}]}, name="l", dry_run="1")
    audit_cfg, deny_cfg, allow_cfg = (f["typedConfig"] for f in build_rbac_filters([deny, allow, audit]))
    assert set(deny_cfg) == {"@type", "shadowRules", "shadowRulesStatPrefix"}
    assert (
        deny_cfg["shadowRules"]["action"] == "DENY"
        and deny_cfg["shadowRulesStatPrefix"] == "istio_dry_run_deny_"
    )
    assert set(allow_cfg) == {"@type", "rules", "shadowRulesStatPrefix"}
    assert set(audit_cfg) == {"@type", "shadowRules"}  # LOG shadow rules have no stat prefix
    with pytest.raises(ConfigError, match="istio.io/dry-run"):
        build_rbac_filters([policy({}, dry_run="yes")])


def test_extended_flag_gives_istiods_only_form() -> None:
    spec = {"rules": [{"when": [{"key": "request.auth.claims[a]", "values": ["b"]}]}]}
    assert build_rbac_filters([policy(spec)], extended=False) == build_rbac_filters([policy(spec)])


def src(**fields: list[str]) -> dict[str, Any]:
    return {"rules": [{"from": [{"source": fields}]}]}


def oper(**fields: list[str]) -> dict[str, Any]:
    return {"rules": [{"to": [{"operation": fields}]}]}


def cond(key: str, **values: list[str]) -> dict[str, Any]:
    return {"rules": [{"when": [{"key": key, **(values or {"values": ["v"]})}]}]}


FROM = "spec.rules[0].from[0].source."
SECOND_RULE_SECOND_FROM = {
    "rules": [{}, {"from": [{"source": {"requestPrincipals": ["*"]}}, {"source": {"ipBlocks": ["1.2.3.4"]}}]}]
}
REFUSED = [
    (src(principals=["cluster.local/ns/a/sa/b"]), FROM + "principals", "mTLS"),
    (src(notPrincipals=["*"]), FROM + "notPrincipals", "mTLS"),
    (src(namespaces=["a"]), FROM + "namespaces", "mTLS"),
    (src(notNamespaces=["a"]), FROM + "notNamespaces", "mTLS"),
    (src(serviceAccounts=["a/b"]), FROM + "serviceAccounts", "mTLS"),
    (src(notServiceAccounts=["a/b"]), FROM + "notServiceAccounts", "mTLS"),
    (src(ipBlocks=["1.2.3.4"]), FROM + "ipBlocks", "addresses"),
    (src(notIpBlocks=["1.2.3.4"]), FROM + "notIpBlocks", "addresses"),
    (src(remoteIpBlocks=["1.2.3.4"]), FROM + "remoteIpBlocks", "addresses"),
    (src(notRemoteIpBlocks=["1.2.3.4"]), FROM + "notRemoteIpBlocks", "addresses"),
    (src(trustDomains=["td"]), FROM + "trustDomains", "mTLS"),  # newer API field (golden trust-domains)
    (SECOND_RULE_SECOND_FROM,
     "spec.rules[1].from[1].source.ipBlocks", "addresses"),
    (oper(ports=["8080"]), "spec.rules[0].to[0].operation.ports", "ports"),
    (oper(notPorts=["8080"]), "spec.rules[0].to[0].operation.notPorts", "ports"),
    (oper(paths=["/"], schemes=["http"]), "spec.rules[0].to[0].operation.schemes", "unknown field"),
    (cond("source.ip"), 'spec.rules[0].when[0].key "source.ip"', "addresses"),
    (cond("source.namespace"), 'key "source.namespace"', "mTLS"),
    (cond("source.principal"), 'key "source.principal"', "mTLS"),
    (cond("source.serviceAccount"), 'key "source.serviceAccount"', "mTLS"),
    (cond("destination.ip"), 'key "destination.ip"', "addresses"),
    (cond("destination.port", notValues=["80"]), 'key "destination.port"', "ports"),
    (cond("destination.labels[app]"), 'key "destination.labels[app]"', "unknown attribute"),
    (cond("remote.ip"), 'key "remote.ip"', "addresses"),
    (cond("connection.sni"), 'key "connection.sni"', "SNI"),
    (cond("experimental.envoy.filters.a.b[c]"), 'key "experimental.envoy.filters.a.b[c]"', "experimental"),
    (cond("request.experimental.inline.headers[a]"), 'key "request.experimental.inline', "experimental"),
    (cond("request.auth.issuer"), 'key "request.auth.issuer"', "unknown attribute"),
    ({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}, "spec.action", "ext_authz"),
    ({"provider": {"name": "ext"}, "rules": [{}]}, "spec.provider", "ext_authz"),
    ({"action": "REJECT"}, "spec.action", "unknown action"),
    ({"rules": [{"unless": []}]}, "spec.rules[0].unless", "unknown field"),
    ({"rules": [{}], "mode": "strict"}, "spec.mode", "unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "why"), REFUSED, ids=[r[1] for r in REFUSED])
def test_unsupported_fields_are_refused(spec: dict[str, Any], field: str, why: str) -> None:
    with pytest.raises(UnsupportedField) as err:
        build_rbac_filters([policy({"rules": [{}]}, name="ok"), policy(spec, name="bad", namespace="ns1")])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("AuthorizationPolicy ns1/bad: ")
    assert field in message and why in message, message


INVALID = [
    ({"action": "DENY"}, "spec.rules", "never triggers"),
    ({"rules": [None]}, "spec.rules[0]", "null"),
    ({"rules": [{"from": []}]}, "spec.rules[0].from", "non-empty"),
    ({"rules": [{"from": [{}]}]}, "spec.rules[0].from[0].source", "must be set"),
    (oper(), "spec.rules[0].to[0].operation", "must not be empty"),
    (oper(paths=[""]), "operation.paths", "non-empty strings"),
    (oper(paths=["/a/{**}/{*}"]), "operation.paths", "must come last"),
    (oper(notPaths=["/a/{x}"]), "operation.notPaths", "invalid path template"),
    (cond("request.headers"), "when[0]", "request.headers[name]"),
    (cond("request.auth.claims[]"), "when[0]", "claims[name]"),
    (cond("request.auth.claims[a]", values=[]), "when[0]", "values or notValues"),
]


@pytest.mark.parametrize(("spec", "field", "why"), INVALID, ids=[r[1] + " " + r[2] for r in INVALID])
def test_input_istio_rejects_is_a_config_error(spec: dict[str, Any], field: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_rbac_filters([policy(spec)])
    assert "\n" not in str(err.value) and field in str(err.value) and why in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("mode", "want"),
    [
        ("NONE", (False, False, "KEEP_UNCHANGED")),
        ("BASE", (True, False, "KEEP_UNCHANGED")),
        ("DEFAULT", (True, False, "KEEP_UNCHANGED")),
        ("MERGE_SLASHES", (True, True, "KEEP_UNCHANGED")),
        ("DECODE_AND_MERGE_SLASHES", (True, True, "UNESCAPE_AND_FORWARD")),
    ],
)
def test_path_normalization(mode: str, want: tuple[bool, bool, str]) -> None:
    fields = path_normalization(mode)
    assert (fields["normalizePath"], fields["mergeSlashes"], fields["pathWithEscapedSlashesAction"]) == want


def test_path_normalization_default_and_unknown() -> None:
    assert path_normalization() == path_normalization("BASE")
    with pytest.raises(ConfigError, match="MERGE_SLASHES"):
        path_normalization("merge")


@pytest.mark.integration
def test_envoy_accepts_the_output() -> None:
    """Envoy 1.40 validates a bootstrap holding every kind of matcher the translator emits."""
    when = [
        {"key": "request.auth.claims[groups]", "values": ["a", "b*"], "notValues": ["*c"]},
        {"key": "request.auth.claims[n][m]", "values": ["x"]},
        {"key": "request.auth.audiences", "values": ["aud"]},
        {"key": "request.auth.presenter", "values": ["azp"]},
        {"key": "request.auth.principal", "values": ["*/s"], "notValues": ["i/*"]},
        {"key": "request.headers[x-h]", "values": ["*", "v"], "notValues": ["p*"]},
    ]
    op = {"hosts": ["a.com", "*.b.com"], "notHosts": ["*"], "methods": ["GET"], "notMethods": ["DELETE"],
          "paths": ["/a", "/b/*", "*/c", "*", "/d/{*}/e/{**}"], "notPaths": ["/{**}"]}  # fmt: skip
    source = {"requestPrincipals": ["*", "i/s", "i/p*", "*x/s"], "notRequestPrincipals": ["n"]}
    policies = [
        policy(
            {"rules": [{"from": [{"source": source}], "to": [{"operation": op}], "when": when}]}, name="a"
        ),
        policy({"action": "DENY", "rules": [{"to": [{"operation": {"notPaths": ["/x"]}}]}]}, name="d"),
        policy({"action": "DENY", "rules": [{}]}, name="dd", dry_run="true"),
        policy({"action": "AUDIT", "rules": [{}]}, name="l"),
        policy({}, name="none"),
    ]
    filters = build_rbac_filters(policies)
    assert len(filters) == 3
    assert validate_http_filters(filters, **path_normalization("DECODE_AND_MERGE_SLASHES")) is None
