"""The golden checks' own machinery: where the data must be (CI fails without it), and the authz stripping helper."""

from __future__ import annotations

from typing import Any

import pytest
from authz_supported_part import strip_input, strip_output
from istio_golden import ENV, NEEDED, missing, need


def test_golden_data_is_there_in_ci() -> None:
    """In CI the golden checks must run: absent data is one failing test with one line; elsewhere a skip."""
    for sub in NEEDED:
        assert need(sub).exists()


def test_missing_names_each_absent_path_on_one_line(tmp_path: Any) -> None:
    (tmp_path / "authz" / "http").mkdir(parents=True)
    why = missing({ENV: str(tmp_path)})
    assert why and "\n" not in why and ENV in why
    assert str(tmp_path / "authn" / "policy_applier_test.go") in why and "authz" not in why
    (tmp_path / "authn").mkdir()
    (tmp_path / "authn" / "policy_applier_test.go").write_text("package authn\n")
    assert missing({ENV: str(tmp_path)}) is None


def _policy(rule: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "foo"}, "spec": {"rules": [rule]}}  # fmt: skip


def _jwt(claim: str, value: str) -> dict[str, Any]:
    path = [{"key": "payload"}, {"key": claim}]
    return {
        "metadata": {"filter": "envoy.filters.http.jwt_authn", "path": path, "value": {"stringMatch": {"exact": value}}}
    }


def _mtls(name: str) -> dict[str, Any]:
    return {"authenticated": {"principalName": {"exact": f"spiffe://{name}"}}}


def _rbac(principals: list[dict[str, Any]]) -> dict[str, Any]:
    policy = {"permissions": [{"andRules": {"rules": [{"any": True}]}}], "principals": principals}
    return {
        "name": "envoy.filters.http.rbac",
        "typedConfig": {"rules": {"policies": {"ns[foo]-policy[p]-rule[0]": policy}}},
    }


def test_strip_removes_refused_fields_and_only_their_matchers() -> None:
    rule = {
        "from": [{"source": {"principals": ["a"], "requestPrincipals": ["i/s"]}}, {"source": {"namespaces": ["n"]}}]
    }
    (docs,), stripped = strip_input([_policy(rule)])
    assert docs["spec"]["rules"] == [{"from": [{"source": {"requestPrincipals": ["i/s"]}}]}]
    assert stripped.fields == [("p", "spec.rules[0].from[0].source.principals"),
                               ("p", "spec.rules[0].from[1].source.namespaces")]  # fmt: skip
    golden = _rbac([{"andIds": {"ids": [_mtls("a"), _jwt("iss", "i")]}}, {"andIds": {"ids": [_mtls("ns/n")]}}])
    kept = strip_output(golden, stripped)["typedConfig"]["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"]
    assert kept["principals"] == [{"andIds": {"ids": [_jwt("iss", "i")]}}]  # the emptied from[1] is dropped


def test_strip_keeps_istiods_any_when_every_entry_empties() -> None:
    (docs,), stripped = strip_input([_policy({"from": [{"source": {"principals": ["a"]}}]})])
    assert docs["spec"]["rules"] == [{}]
    kept = strip_output(_rbac([{"andIds": {"ids": [_mtls("a")]}}]), stripped)
    assert kept["typedConfig"]["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"]["principals"] == [
        {"andIds": {"ids": [{"any": True}]}}
    ]


def test_strip_refuses_a_matcher_mixing_stripped_and_kept_kinds() -> None:
    _, stripped = strip_input([_policy({"from": [{"source": {"principals": ["a"], "requestPrincipals": ["i/s"]}}]})])
    mixed = _rbac([{"andIds": {"ids": [{"orIds": {"ids": [_mtls("a"), _jwt("iss", "i")]}}]}}])
    with pytest.raises(AssertionError, match="mixes stripped and kept kinds"):
        strip_output(mixed, stripped)
