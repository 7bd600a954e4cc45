"""Manifests and scenario files validate against the Kubernetes and Istio schemas; bad ones are named."""

from __future__ import annotations

from pathlib import Path

from meshjwt.kube import validate

ROOT = Path(__file__).resolve().parents[1]
KUBE = "1.36.1"


def test_repository_manifests_validate():
    paths = [p for p in (ROOT / "manifests", ROOT / "suites" / "scenarios") if p.exists()]
    assert validate.validate_paths(paths, KUBE) == []


def test_workload_manifests_validate_for_every_supported_node_version():
    from meshjwt.kube.versions import ISTIO_RELEASES

    for release in ISTIO_RELEASES.values():
        assert validate.validate_paths([ROOT / "manifests" / "workloads"], release.node_version[1:]) == []


def test_unknown_kubernetes_field_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: '${NAMESPACE}'}\n"
        "spec: {ports: [{port: 80}], bogus: 1}\n"
    )
    (problem,) = validate.validate_paths([bad], KUBE)
    assert str(bad) in problem and "Service/s" in problem and "bogus" in problem


SCENARIO = """\
kind: Scenario
name: demo
manifests:
  - inline:
      apiVersion: security.istio.io/v1
      kind: RequestAuthentication
      metadata: {name: jwt, namespace: "${NAMESPACE}"}
      spec:
        selector: {matchLabels: {app: httpbin}}
        jwtRules:
          - issuer: "${ISSUER}"
            jwks: '${JWKS}'
            timeout: 5s
  - inline:
      apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: deny, namespace: "${NAMESPACE}"}
      spec:
        action: DENY
        rules:
          - from: [{source: {notRequestPrincipals: ["*"]}}]
            to: [{operation: {notPaths: ["/healthz"]}}]
  - inline:
      apiVersion: networking.istio.io/v1
      kind: ServiceEntry
      metadata: {name: ext, namespace: "${NAMESPACE}"}
      spec: {hosts: ["${EXTERNAL_JWKS_HOST}"], ports: [{number: 443, name: https, protocol: TLS}],
             resolution: DNS, location: MESH_EXTERNAL}
  - file: extra.yaml
"""


def test_scenario_inline_and_file_resources_validate(tmp_path):
    (tmp_path / "s.yaml").write_text(SCENARIO)
    (tmp_path / "extra.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
        "spec: {host: '${EXTERNAL_JWKS_HOST}', trafficPolicy: {tls: {mode: SIMPLE, sni: x}}}\n"
    )
    assert validate.validate_paths([tmp_path / "s.yaml"], KUBE) == []


def test_scenario_with_misspelt_istio_field_is_named(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.replace("jwtRules", "jwtRule").replace("  - file: extra.yaml\n", ""))
    (problem,) = validate.validate_paths([scenario], KUBE)
    assert "manifests[0] (inline) RequestAuthentication/jwt" in problem and "jwtRule" in problem


def test_scenario_bad_enum_and_missing_file(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.replace("action: DENY", "action: REJECT"))
    problems = validate.validate_paths([scenario], KUBE)
    assert any("AuthorizationPolicy/deny" in p and "REJECT" in p for p in problems)
    assert any("'extra.yaml' not found" in p for p in problems)


def test_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n")
    assert validate.main([str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: [1]\n")
    assert validate.main([str(bad)]) == 1
    assert "bad.yaml: document 0 ConfigMap/c" in capsys.readouterr().err
