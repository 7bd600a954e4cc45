"""The Mesh contract, one test every target passes: the local reference mesh, and the kind and cluster targets'
own code against their simulated clusters (``tox -e rehearsal``). What the runner relies on, whatever the target:
identity, variables, ``apply`` replacing the previous set, ``request_many`` keeping order, ``clear`` and a
``stop`` that is safe twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import SimCluster, settings
from meshjwt.converge import Probe, converge_many
from meshjwt.keys import KeySet
from meshjwt.mesh import Mesh, Request, Response
from meshjwt.placeholders import substitute
from meshjwt.samples import workloads_dir
from meshjwt.scenarios.loader import read_resources
from meshjwt.settings import Timeouts
from meshjwt.targets import target_class
from meshjwt.targets.local import LocalMesh
from meshjwt.tokens import TokenFactory

pytestmark = pytest.mark.integration  # simulated clusters, kubectl and Envoy are real processes

SCENARIO_MANIFESTS = workloads_dir().parent / "scenarios"
#: what every target substitutes into the built-in scenarios' manifests (the runner adds ISSUER, the tokens')
REQUIRED_VARIABLES = {"NAMESPACE", "JWKS"}


def _local(tmp_path: Path, keys: KeySet, request: pytest.FixtureRequest) -> Mesh:
    timeouts = Timeouts.of(LocalMesh.default_timeouts)
    return LocalMesh(settings("local", tmp_path / "reports", timeouts=timeouts), keys.jwks_json())


def _kind(tmp_path: Path, keys: KeySet, request: pytest.FixtureRequest) -> Mesh:
    tools = request.getfixturevalue("kind_tools")
    return target_class("kind")(settings("kind", tmp_path / "reports", **tools), keys.jwks_json())


def _cluster(tmp_path: Path, keys: KeySet, request: pytest.FixtureRequest) -> Mesh:
    cluster: SimCluster = request.getfixturevalue("managed_mesh")
    options = {"kubeconfig": cluster.kubeconfig("tenant-data"), "kubectl_path": request.getfixturevalue("kubectl"),
               "control_plane_kubeconfig": cluster.kubeconfig("tenant-control"), "namespace_prefix": "qual",
               "ingress_url": f"http://127.0.0.1:{cluster.state['gateway_port']}"}  # fmt: skip
    return target_class("cluster")(settings("cluster", tmp_path / "reports", **options), keys.jwks_json())


MAKERS: dict[str, Callable[[Path, KeySet, pytest.FixtureRequest], Mesh]] = {
    "local": _local, "kind": _kind, "cluster": _cluster}  # fmt: skip


@pytest.fixture(params=sorted(MAKERS))
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Mesh, TokenFactory]]:
    keys = KeySet(("RS256",))
    mesh = MAKERS[request.param](tmp_path, keys, request)
    try:
        mesh.start()
        yield mesh, TokenFactory(keys)
    finally:
        mesh.stop()
        mesh.stop()  # the contract: safe twice


def manifests(mesh: Mesh, tokens: TokenFactory, *names: str) -> list[dict]:
    docs = [doc for name in names for doc in read_resources(SCENARIO_MANIFESTS / name)]
    return substitute(docs, {"ISSUER": tokens.issuer, **mesh.variables()}, where="contract test")


def answers(mesh: Mesh, expected: list[tuple[Request, int]]) -> list[str | None]:
    """Converge every (request, status) pair on the target's named timeouts; the problems (None: agreed)."""

    def mismatch(status: int) -> Callable[[Response], str | None]:
        return lambda r: None if r.status == status else f"{r.summary()} != {status}"

    outcomes = converge_many(mesh.request_many, [Probe(r, mismatch(s)) for r, s in expected], mesh.settings.timeouts)
    return [None if o.passed else o.problem for o in outcomes]


def bearer(token: str) -> Request:
    return Request(headers={"Authorization": f"Bearer {token}"})


def test_every_target_keeps_the_mesh_contract(started: tuple[Mesh, TokenFactory]) -> None:
    mesh, tokens = started
    info = mesh.info()
    assert info.target == mesh.name and info.flavor and info.version and info.jwks_fetch_mode
    assert set(mesh.variables()) >= REQUIRED_VARIABLES

    # request_many keeps order: three different answers, asked in an order that is not sorted
    mesh.apply(manifests(mesh, tokens, "ra-httpbin-inline.yaml"))
    sent = [bearer(tokens.expired()), Request(), bearer(tokens.valid())]
    assert answers(mesh, list(zip(sent, [401, 200, 200], strict=True))) == [None, None, None]
    assert [r.status for r in mesh.request_many(sent)] == [401, 200, 200]

    # apply replaces the previous set: with the ALLOW policy a token is required
    mesh.apply(manifests(mesh, tokens, "ra-httpbin-inline.yaml", "ap-httpbin-require-jwt.yaml"))
    assert answers(mesh, [(Request(), 403), (bearer(tokens.valid()), 200)]) == [None, None]
    # ... and without the RequestAuthentication, the same valid token is no principal any more
    mesh.apply(manifests(mesh, tokens, "ap-httpbin-require-jwt.yaml"))
    assert answers(mesh, [(bearer(tokens.valid()), 403)]) == [None]

    # clear removes everything the run applied: an invalid token passes again
    mesh.clear()
    assert answers(mesh, [(bearer(tokens.expired()), 200), (Request(), 200)]) == [None, None]
