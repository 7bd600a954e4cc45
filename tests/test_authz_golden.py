"""The AuthorizationPolicy translator against istiod's golden files (authz/builder/testdata/http).

Every golden file is accounted for below: compared field by field, compared after an explicit and
honest transformation, or listed as not checkable with the reason (and then the translator must
refuse the input, naming the field). The golden files are read in place, never copied.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshjwt.errors import UnsupportedField
from meshjwt.localmesh.envoy import validate_http_filters
from meshjwt.localmesh.translate.authz import build_rbac_filters

GOLDEN = Path(
    os.environ.get("MESHJWT_ISTIO_GOLDEN")
    or Path(__file__).resolve().parents[2] / "shared" / "istio-golden" / "authz" / "http"
)
pytestmark = pytest.mark.skipif(
    not GOLDEN.is_dir(), reason=f"Istio golden folder {GOLDEN} is absent (set MESHJWT_ISTIO_GOLDEN to it)"
)

#: inputs using only supported fields: input stem -> output stems (each as NAME and extended-NAME if present)
COMPARED = {
    "allow-empty-rule": ["allow-empty-rule-out"],
    "allow-nil-rule": ["allow-nil-rule-out"],
    "allow-path": ["allow-path-out"],
    "audit-full-rule": ["audit-full-rule-out"],
    "deny-empty-rule": ["deny-empty-rule-out"],
    "dry-run-allow": ["dry-run-allow-out"],
    "dry-run-allow-and-deny": ["dry-run-allow-and-deny-out1", "dry-run-allow-and-deny-out2"],
    "dry-run-mix": ["dry-run-mix-out"],
}

#: inputs whose *whole policies* use refused fields: those policies are dropped (each must be refused,
#: naming the field) and the golden's entries for them removed. RBAC policies are independent map
#: entries (one per rule), so every kept entry must still match exactly. No rule is pruned.
PRUNED = {
    "multiple-policies": (
        ["multiple-policies-out"],
        {
            "httpbin-4": "spec.rules[0].to[0].operation.ports",
            "httpbin-5": "spec.rules[0].from[0].source.principals",
            "httpbin-7": "spec.rules[0].from[0].source.namespaces",
            "httpbin-8": "spec.rules[0].from[0].source.ipBlocks",
        },
    ),
}

#: supported input whose golden is the pre-Istio-1.11 proxy form: our current-form output is compared
#: after rewriting each `:authority` stringMatch (ignoreCase) into the `(?i)` regex istio's
#: HostMatcherWithRegex builds; everything else must match as is.
LEGACY_HOSTS = {"allow-host-before-111": ["allow-host-before-111-out"]}

_MTLS = "needs the mTLS peer identity"
_ADDR = "needs real pod/client addresses"
_PORTS = "local ports differ from the workload ports"
#: not checkable: input stem -> (output stems, field the refusal must name, reason)
NOT_CHECKABLE = {
    "allow-full-rule": (
        ["allow-full-rule-out"],
        "spec.rules[0].from[0].source.serviceAccounts",
        f"serviceAccounts, principals, namespaces, source.principal/namespace: {_MTLS}; ipBlocks, "
        f"remoteIpBlocks, source.ip, remote.ip, destination.ip: {_ADDR}; ports, destination.port: {_PORTS}; "
        "connection.sni, experimental.*: unsupported; rule[1] mixes them with supported fields (partial)",
    ),
    "custom-simple-http": (
        [
            "custom-grpc-provider-no-namespace-out1",
            "custom-grpc-provider-no-namespace-out2",
            "custom-grpc-provider-out1",
            "custom-grpc-provider-out2",
            "custom-http-provider-out1",
            "custom-http-provider-out2",
            "custom-bad-out",
        ],
        "spec.action",
        "CUSTOM: needs an ext_authz provider (the outputs are for the builder test's meshConfigs)",
    ),
    "custom-bad-multiple-providers": (
        ["custom-bad-multiple-providers-out1", "custom-bad-multiple-providers-out2"],
        "spec.action",
        "CUSTOM: needs ext_authz providers",
    ),
    "deny-and-allow": (
        ["deny-and-allow-out1", "deny-and-allow-out2"],
        "spec.rules[0].from[0].source.principals",
        f"principals in both policies: {_MTLS}",
    ),
    "single-policy": (
        ["single-policy-out"],
        "spec.rules[0].from[0].source.principals",
        f"every rule has principals/namespaces ({_MTLS}), ipBlocks/remoteIpBlocks/destination.ip/remote.ip "
        f"({_ADDR}) and ports ({_PORTS}) next to supported fields (partial rules)",
    ),
    "simple-policy-td-aliases": (
        ["simple-policy-td-aliases-out"],
        "spec.rules[0].from[0].source.principals",
        f"principals and namespaces with trust-domain aliases: {_MTLS}",
    ),
    "simple-policy-multiple-td-aliases": (
        ["simple-policy-multiple-td-aliases-out"],
        "spec.rules[0].from[0].source.principals",
        f"principals and namespaces with trust-domain aliases: {_MTLS}",
    ),
    "simple-policy-principal-with-wildcard": (
        ["simple-policy-principal-with-wildcard-out"],
        "spec.rules[0].from[0].source.principals",
        f"principals with trust-domain aliases: {_MTLS}",
    ),
    "td-aliases-source-principal": (
        ["td-aliases-source-principal-out"],
        "spec.rules[0].from[0].source.namespaces",
        f"namespaces and when source.principal: {_MTLS}",
    ),
    "trust-domains": (
        ["trust-domains-out"],
        "spec.rules[0].from[0].source.trustDomains",
        "trustDomains/notTrustDomains: not fields of the AuthorizationPolicy API (refused as unknown)",
    ),
}


def _inputs(stem: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((GOLDEN / f"{stem}-in.yaml").read_text()) if doc]


def _variants(out_stem: str) -> list[tuple[str, bool]]:
    """The golden files of one output: (file name, extended flag)."""
    names = [(f"{out_stem}.yaml", False), (f"extended-{out_stem}.yaml", True)]
    found = [(name, ext) for name, ext in names if (GOLDEN / name).is_file()]
    assert found, f"no golden file for {out_stem}"
    return found


def _load(name: str) -> Any:
    return yaml.safe_load((GOLDEN / name).read_text())


def diff(got: Any, want: Any, path: str = "$") -> list[str]:
    """Differences between parsed documents, one line each, by JSON path."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(got) | set(want), key=str):
            if key not in got:
                out.append(f"{path}.{key}: missing, want {json.dumps(want[key])[:120]}")
            elif key not in want:
                out.append(f"{path}.{key}: unexpected {json.dumps(got[key])[:120]}")
            else:
                out += diff(got[key], want[key], f"{path}.{key}")
        return out
    if isinstance(got, list) and isinstance(want, list):
        out = [] if len(got) == len(want) else [f"{path}: {len(got)} items, want {len(want)}"]
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            out += diff(g, w, f"{path}[{i}]")
        return out
    if type(got) is type(want) and got == want:
        return []
    return [f"{path}: got {json.dumps(got)[:120]}, want {json.dumps(want)[:120]}"]


def assert_same(got: Any, want: Any, what: str) -> None:
    problems = diff(got, want)
    assert not problems, f"{what} differs from the golden file:\n" + "\n".join(problems)


@pytest.mark.parametrize("stem", sorted(COMPARED))
def test_compared(stem: str) -> None:
    for extended in (False, True):
        got = build_rbac_filters(_inputs(stem), extended=extended)
        outputs = [(name, ext) for out in COMPARED[stem] for name, ext in _variants(out) if ext == extended]
        if outputs:
            assert len(got) == len(COMPARED[stem]), f"{stem}: {len(got)} filters, want {len(COMPARED[stem])}"
            for (name, _), filt in zip(outputs, got, strict=True):
                assert_same(filt, _load(name), f"{stem} → {name}")


@pytest.mark.parametrize("stem", sorted(PRUNED))
def test_compared_without_refused_policies(stem: str) -> None:
    outputs, refused = PRUNED[stem]
    docs = _inputs(stem)
    first = next(doc for doc in docs if doc["metadata"]["name"] in refused)
    with pytest.raises(UnsupportedField, match=re.escape(refused[first["metadata"]["name"]])):
        build_rbac_filters(docs)
    for doc in docs:
        if doc["metadata"]["name"] in refused:
            _assert_refused([doc], refused[doc["metadata"]["name"]])
    kept = [doc for doc in docs if doc["metadata"]["name"] not in refused]
    for out in outputs:
        for name, extended in _variants(out):
            want = _load(name)
            policies = want["typedConfig"]["rules"]["policies"]
            for key in list(policies):
                if any(f"-policy[{dropped}]-" in key for dropped in refused):
                    del policies[key]
            (got,) = build_rbac_filters(kept, extended=extended)
            assert_same(got, want, f"{stem} without {', '.join(refused)} → {name}")


_GO_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _quote_meta(text: str) -> str:
    """Go's ``regexp.QuoteMeta``."""
    return _GO_REGEX_META.sub(r"\\\1", text)


def _legacy_hosts(node: Any) -> Any:
    """Our `:authority` matchers rewritten the way istio's HostMatcherWithRegex wrote them (pre-1.11)."""
    if isinstance(node, list):
        return [_legacy_hosts(n) for n in node]
    if not isinstance(node, dict):
        return node
    m = node.get("stringMatch")
    if node.get("name") == ":authority" and m and m.get("ignoreCase"):
        if "suffix" in m:
            regex = ".*" + _quote_meta(m["suffix"])
        elif "prefix" in m:
            regex = _quote_meta(m["prefix"]) + ".*"
        else:
            regex = _quote_meta(m["exact"])
        return {"name": ":authority", "safeRegexMatch": {"regex": "(?i)" + regex}}
    return {k: _legacy_hosts(v) for k, v in node.items()}


@pytest.mark.parametrize("stem", sorted(LEGACY_HOSTS))
def test_compared_in_legacy_host_form(stem: str) -> None:
    for out in LEGACY_HOSTS[stem]:
        for name, extended in _variants(out):
            (got,) = build_rbac_filters(_inputs(stem), extended=extended)
            assert "safeRegexMatch" not in json.dumps(got)
            assert_same(_legacy_hosts(got), _load(name), f"{stem} (pre-1.11 host form) → {name}")


def _assert_refused(docs: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(UnsupportedField) as err:
        build_rbac_filters(docs)
    message = str(err.value)
    assert "\n" not in message
    assert field in message, message
    assert re.match(r"AuthorizationPolicy \S+/\S+: ", message), message


@pytest.mark.parametrize("stem", sorted(NOT_CHECKABLE))
def test_not_checkable_inputs_are_refused(stem: str) -> None:
    _, field, reason = NOT_CHECKABLE[stem]
    assert reason
    _assert_refused(_inputs(stem), field)


def test_every_golden_file_is_accounted_for() -> None:
    """Nothing is silently dropped: each input and output file is compared or listed with a reason."""
    inputs = {p.name[: -len("-in.yaml")] for p in GOLDEN.glob("*-in.yaml")}
    listed_inputs = set(COMPARED) | set(PRUNED) | set(LEGACY_HOSTS) | set(NOT_CHECKABLE)
    assert inputs == listed_inputs, f"unlisted: {inputs - listed_inputs}, missing: {listed_inputs - inputs}"
    out_stems = [*COMPARED.values(), *(v[0] for v in PRUNED.values()), *LEGACY_HOSTS.values()]
    out_stems += [v[0] for v in NOT_CHECKABLE.values()]
    listed_outputs = {name for stems in out_stems for stem in stems for name, _ in _variants(stem)}
    outputs = {p.name for p in GOLDEN.glob("*.yaml")} - {f"{stem}-in.yaml" for stem in inputs}
    assert outputs == listed_outputs, f"unlisted: {outputs - listed_outputs}"


def test_envoy_accepts_the_compared_outputs() -> None:
    filters = [f for stem in COMPARED for f in build_rbac_filters(_inputs(stem))]
    dropped = PRUNED["multiple-policies"][1]
    filters += build_rbac_filters(
        [d for d in _inputs("multiple-policies") if d["metadata"]["name"] not in dropped]
    )
    filters += build_rbac_filters(_inputs("allow-host-before-111"))
    assert validate_http_filters(filters) is None
