"""``meshjwt validate`` on policy files with the base install: Istio's schema (shipped), unknown fields and what
the local mesh cannot run, each ``file:line: field: why``; the playground refuses exactly the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshjwt.__main__ import main
from meshjwt.errors import ConfigError
from meshjwt.kube import validate as kube_validate
from meshjwt.playground import load_policies

ROOT = Path(__file__).resolve().parents[1]
HEAD = "apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata:\n  name: p\n  namespace: foo\nspec:\n"
RA = HEAD.format(kind="RequestAuthentication") + "  jwtRules:\n  - issuer: https://x\n    jwksUri: https://x/jwks\n"
AP = HEAD.format(kind="AuthorizationPolicy")

#: file text → the one line validate and the playground give (after the file's path)
BAD = {
    "bogus": (RA + "  bogus: 1\n", ":10: spec.bogus: unknown field: Istio's RequestAuthentication has no 'bogus'"),
    "ipblocks": (AP + "  rules:\n  - from:\n    - source:\n        ipBlocks: [1.2.3.4]\n",
                 ":10: spec.rules[0].from[0].source.ipBlocks: AuthorizationPolicy foo/p: not supported by the local "
                 "mesh"),
    "schema": (AP + "  action: MAYBE\n", ":7: spec.action: 'MAYBE' is not one of"),
    "nested-unknown": (AP + "  rules:\n  - to:\n    - operation:\n        verbs: [GET]\n",
                       ":10: spec.rules[0].to[0].operation.verbs: unknown field"),
    "custom": (AP + "  action: CUSTOM\n  provider: {name: ext}\n", ":7: spec.action: AuthorizationPolicy foo/p:"),
    "webhook": (RA.replace("https://x/jwks", "ftp://x/jwks"),
                ":8: spec.jwtRules[0]: RequestAuthentication foo/p: refused by Istio's validation webhook: admission"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_problem_is_one_line_with_file_line_field_why_and_exit_1(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD[name]
    policy = tmp_path / f"{name}.yaml"
    policy.write_text(text)
    assert main(["validate", str(policy)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(str(policy) + expected.split(": ", 1)[0]), err
    assert expected.split(": ", 1)[1] in err[0], err


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_playground_refuses_the_same_files_with_the_same_line(name: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(BAD[name][0])
    main(["validate", str(folder)])
    said = capsys.readouterr().err.splitlines()[0]
    with pytest.raises(ConfigError) as refused:
        load_policies(folder, {})
    assert str(refused.value) == said


def test_the_examples_pass_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "examples" / "policies")]) == 0
    assert load_policies(ROOT / "examples" / "policies", {"ISSUER": "https://i", "JWKS": '{"keys": []}'})


def test_several_problems_are_each_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(BAD["bogus"][0])
    (tmp_path / "b.yaml").write_text(BAD["ipblocks"][0].replace("name: p", "name: q"))
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[0] for line in err] == [f"{tmp_path / 'a.yaml'}:10", f"{tmp_path / 'b.yaml'}:10"]


def test_the_shipped_istio_schemas_are_cloudcoils() -> None:
    """istio-schemas.json is generated (python -m meshjwt.kube.validate --write-istio-schemas), never edited."""
    pytest.importorskip("cloudcoil.models.istio", reason="the lint extra makes the schemas")
    assert kube_validate.shipped_schemas() == kube_validate.generate_shipped()
