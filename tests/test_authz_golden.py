"""The AuthorizationPolicy translator against istiod's golden files (authz/builder/testdata/http).

Every input is compared with istiod's output, field by field, on its *supported part*: the fields the
local mesh refuses (mTLS identities, addresses, ports, SNI, experimental keys) are stripped from the
input and exactly the matchers istiod made of them from the golden output (``authz_supported_part``),
so request principals, ``notRequestPrincipals``, wildcards, ``request.auth.claims`` (nested too),
``request.auth.principal/audiences/presenter``, hosts, methods and paths are all compared with istiod.
The unstripped input must be refused, naming its first refused field. Only CUSTOM inputs (ext_authz)
have no supported part; they must be refused. The ``extended-*`` outputs are compared the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from authz_supported_part import count_jwt_matchers, strip_input, strip_output
from istio_golden import assert_same, need

from meshjwt.errors import UnsupportedField
from meshjwt.localmesh.envoy import validate_http_filters
from meshjwt.localmesh.translate.authz import build_rbac_filters

#: Istio's golden folder of the AuthorizationPolicy builder, under the golden root; each test reads it through
#: golden() (a skip, or under CI=true a failure, when it is unavailable), so every test is collected without it
GOLDEN_SUB = "authz/http"


def golden() -> Path:
    return need(GOLDEN_SUB)


#: input stem -> its output stems, in filter order (each also as extended-NAME where that file exists)
COMPARED = {
    "allow-empty-rule": ["allow-empty-rule-out"],
    "allow-full-rule": ["allow-full-rule-out"],
    "allow-nil-rule": ["allow-nil-rule-out"],
    "allow-path": ["allow-path-out"],
    "audit-full-rule": ["audit-full-rule-out"],
    "deny-and-allow": ["deny-and-allow-out1", "deny-and-allow-out2"],
    "deny-empty-rule": ["deny-empty-rule-out"],
    "dry-run-allow": ["dry-run-allow-out"],
    "dry-run-allow-and-deny": ["dry-run-allow-and-deny-out1", "dry-run-allow-and-deny-out2"],
    "dry-run-mix": ["dry-run-mix-out"],
    "multiple-policies": ["multiple-policies-out"],
    "simple-policy-multiple-td-aliases": ["simple-policy-multiple-td-aliases-out"],
    "simple-policy-principal-with-wildcard": ["simple-policy-principal-with-wildcard-out"],
    "simple-policy-td-aliases": ["simple-policy-td-aliases-out"],
    "single-policy": ["single-policy-out"],
    "td-aliases-source-principal": ["td-aliases-source-principal-out"],
    "trust-domains": ["trust-domains-out"],
}
#: inputs whose golden holds JWT matchers: how many (each request principal, claim, audience, presenter …)
JWT_MATCHERS = {"allow-full-rule": 42, "single-policy": 16, "multiple-policies": 4}

#: supported input whose golden is the pre-Istio-1.11 proxy form: our current-form output is compared
#: after rewriting each `:authority` stringMatch (ignoreCase) into the `(?i)` regex istio's
#: HostMatcherWithRegex builds; everything else must match as is.
LEGACY_HOSTS = {"allow-host-before-111": ["allow-host-before-111-out"]}

#: no supported part: input stem -> (output stems, field the refusal must name, reason)
NOT_CHECKABLE = {
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
}


def _inputs(stem: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((golden() / f"{stem}-in.yaml").read_text()) if doc]


def _variants(out_stem: str) -> list[tuple[str, bool]]:
    """The golden files of one output: (file name, extended flag)."""
    names = [(f"{out_stem}.yaml", False), (f"extended-{out_stem}.yaml", True)]
    found = [(name, ext) for name, ext in names if (golden() / name).is_file()]
    assert found, f"no golden file for {out_stem}"
    return found


def _load(name: str) -> Any:
    return yaml.safe_load((golden() / name).read_text())


def _assert_refused(docs: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(UnsupportedField) as err:
        build_rbac_filters(docs)
    message = str(err.value)
    assert "\n" not in message
    assert field in message, message
    assert re.match(r"AuthorizationPolicy \S+/\S+: ", message), message


@pytest.mark.parametrize("stem", sorted(COMPARED))
def test_supported_part_matches_istiod(stem: str) -> None:
    docs, stripped = strip_input(_inputs(stem))
    for extended in (False, True):
        outputs = [(name, out) for out in COMPARED[stem] for name, ext in _variants(out) if ext == extended]
        got = build_rbac_filters(docs, extended=extended)
        assert len(got) == len(outputs), f"{stem}: {len(got)} filters, want {len(outputs)}"
        for (name, _), filt in zip(outputs, got, strict=True):
            want = strip_output(_load(name), stripped)
            what = f"{stem} → {name}" + (f" without {len(stripped.fields)} refused fields" if stripped.fields else "")
            assert_same(filt, want, what)


@pytest.mark.parametrize("stem", sorted(COMPARED))
def test_stripping_keeps_every_jwt_matcher(stem: str) -> None:
    """The helper strips only refused matchers: every jwt_authn matcher of istiod's output stays compared."""
    _, stripped = strip_input(_inputs(stem))
    for out in COMPARED[stem]:
        for name, _ in _variants(out):
            original = _load(name)
            assert count_jwt_matchers(strip_output(original, stripped)) == count_jwt_matchers(original)
            assert count_jwt_matchers(original) == JWT_MATCHERS.get(stem, 0), name


#: the compared inputs that hold fields the local mesh refuses (test_refusing_inputs_are_these checks the list)
REFUSING = ["allow-full-rule", "deny-and-allow", "multiple-policies", "simple-policy-multiple-td-aliases",
            "simple-policy-principal-with-wildcard", "simple-policy-td-aliases", "single-policy",
            "td-aliases-source-principal", "trust-domains"]  # fmt: skip


def test_refusing_inputs_are_these() -> None:
    assert sorted(stem for stem in COMPARED if strip_input(_inputs(stem))[1].fields) == REFUSING


@pytest.mark.parametrize("stem", REFUSING)
def test_refused_fields_are_named(stem: str) -> None:
    """Unstripped, the input is refused, naming the first refused field (per policy and for all together)."""
    docs = _inputs(stem)
    fields = strip_input(docs)[1].fields
    _assert_refused(docs, fields[0][1])
    for doc in docs:
        own = [path for name, path in fields if name == doc["metadata"]["name"]]
        if own:
            _assert_refused([doc], own[0])


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


@pytest.mark.parametrize("stem", sorted(NOT_CHECKABLE))
def test_not_checkable_inputs_are_refused(stem: str) -> None:
    _, field, reason = NOT_CHECKABLE[stem]
    assert reason
    _assert_refused(_inputs(stem), field)


def _compared_files() -> list[str]:
    stems = [*COMPARED.values(), *LEGACY_HOSTS.values()]
    return sorted(name for outs in stems for out in outs for name, _ in _variants(out))


def test_every_golden_file_is_accounted_for() -> None:
    """Nothing is silently dropped: each input and output file is compared or listed with a reason."""
    inputs = {p.name[: -len("-in.yaml")] for p in golden().glob("*-in.yaml")}
    listed_inputs = set(COMPARED) | set(LEGACY_HOSTS) | set(NOT_CHECKABLE)
    assert inputs == listed_inputs, f"unlisted: {inputs - listed_inputs}, missing: {listed_inputs - inputs}"
    refused = [name for v in NOT_CHECKABLE.values() for stem in v[0] for name, _ in _variants(stem)]
    outputs = {p.name for p in golden().glob("*.yaml")} - {f"{stem}-in.yaml" for stem in inputs}
    assert outputs == set(_compared_files()) | set(refused), f"unlisted: {outputs - set(_compared_files())}"


def test_coverage_figures() -> None:
    """The figures the closing note quotes: output files compared field by field, of all, and distinct."""
    compared = _compared_files()
    total = len({p.name for p in golden().glob("*.yaml")} - {p.name for p in golden().glob("*-in.yaml")})
    distinct = len({hashlib.sha256((golden() / name).read_bytes()).hexdigest() for name in compared})
    assert (len(compared), total, distinct) == (39, 57, 20), (len(compared), total, distinct)


@pytest.mark.integration
def test_envoy_accepts_the_compared_outputs() -> None:
    filters = [f for stem in COMPARED for f in build_rbac_filters(strip_input(_inputs(stem))[0])]
    filters += build_rbac_filters(_inputs("allow-host-before-111"))
    assert validate_http_filters(filters) is None
