"""Security machinery on the real local mesh: probe backends, mode switching, repeated headers, attacker JWKS."""

import http.client
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from live_processes import processes_mentioning

from meshjwt.converge import converge
from meshjwt.keys import KeySet
from meshjwt.mesh import Request, Response
from meshjwt.scenarios.loader import BUILTIN_DIR, load_file
from meshjwt.scenarios.model import Case, Expectation, Scenario, TokenSpec
from meshjwt.scenarios.runner import ScenarioRunner
from meshjwt.security import probe
from meshjwt.security.backends import BACKENDS, missing_reason
from meshjwt.security.corpus import Corpus
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets.local import LocalMesh
from meshjwt.tokens import TokenFactory

pytestmark = pytest.mark.integration  # every test here starts real processes

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(timeouts=Timeouts.of(LocalMesh.default_timeouts, {"converge": 1.0}))
SMALL = Corpus(("//private/secret.html", "/private%2Fsecret.html", "/./private/secret.html", "/public/index.html"),
               seed=0, mutations=0)  # fmt: skip


@pytest.fixture(scope="module")
def keys():
    return KeySet(("RS256",))


@pytest.fixture(scope="module")
def mesh(keys):
    instance = LocalMesh(SETTINGS, keys.jwks_json())
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def setup(mesh):
    missing = [reason for name in BACKENDS if (reason := missing_reason(name))]
    if missing:
        pytest.skip("; ".join(missing))
    return probe.start_backends(mesh, SETTINGS.timeouts.start)


def variables(mesh):
    return {"ISSUER": "testing@secure.istio.io", **mesh.variables()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_base_lets_double_slash_through_and_decode_and_merge_closes_it(mesh, setup, backend):
    base = probe.run_combination(mesh, setup, "BASE", backend, "deny-paths", SMALL, variables(mesh),
                                 SETTINGS.timeouts, 10)  # fmt: skip
    assert base.problem is None and base.requests == 4
    leaked = [b.request_line for b in base.bypasses]
    assert "GET //private/secret.html HTTP/1.1" in leaked and not base.unexplained
    assert ("GET /private%2Fsecret.html HTTP/1.1" in leaked) is (backend == "nginx")  # apache refuses %2F
    closed = probe.run_combination(mesh, setup, "DECODE_AND_MERGE_SLASHES", backend, "deny-paths", SMALL,
                                   variables(mesh), SETTINGS.timeouts, 10)  # fmt: skip
    assert closed.problem is None and closed.bypasses == [] and closed.statuses[403] == 3
    exclusion = probe.run_combination(mesh, setup, "NONE", backend, "path-exclusion", SMALL, variables(mesh),
                                      SETTINGS.timeouts, 10)  # fmt: skip
    assert exclusion.bypasses == [] and exclusion.statuses[200] == 1  # only the public page


def test_probe_restores_the_mesh(mesh, setup):
    mesh.apply([])
    before = json.dumps(mesh.envoy.last_config, sort_keys=True)
    probe.run_combination(mesh, setup, "MERGE_SLASHES", "nginx", "deny-paths", SMALL, variables(mesh),
                          SETTINGS.timeouts, 10)  # fmt: skip
    assert mesh.path_normalization == "BASE" and mesh.applied == []
    assert json.dumps(mesh.envoy.last_config, sort_keys=True) == before


def test_backends_stop_with_the_mesh(keys):
    if missing_reason("nginx"):
        pytest.skip(missing_reason("nginx"))
    mesh = LocalMesh(SETTINGS, keys.jwks_json())
    mesh.start()
    try:
        probe.start_backends(mesh, SETTINGS.timeouts.start, names=["nginx"])
        backend = mesh.backends[0]
        pid, directory = backend.process.pid, backend.directory
        assert directory.is_dir()
    finally:
        mesh.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not directory.exists() and mesh.backends == []


def test_repeated_headers_reach_the_workload(mesh):
    mesh.apply([])
    response = mesh.request(Request(path="/headers", headers={"X-Dup": "one"}, extra_headers=(("X-Dup", "two"),)))
    assert response.status == 200
    assert set(json.loads(response.body)["headers"]["X-Dup"].replace(" ", "").split(",")) == {"one", "two"}


def test_attacker_jwks_is_really_served(mesh, keys):
    tokens = TokenFactory(keys)
    url = mesh.serve_attacker_jwks(tokens.attacker_jwks_json())
    assert url.startswith("http://jwks.meshjwt.test/")
    conn = http.client.HTTPConnection("127.0.0.1", mesh.ports["external-http"], timeout=5)
    conn.request("GET", url.split("jwks.meshjwt.test", 1)[1])
    assert json.loads(conn.getresponse().read())["keys"][0]["kid"] == tokens.attacker.kid
    conn.close()


def test_an_accepted_attack_fails_saying_so(mesh, keys):
    scenario, without_alg = load_file(BUILTIN_DIR / "06-token-attacks.yaml")
    assert len(scenario.cases) >= 30 and without_alg.name == "token-attacks-jwks-without-alg"
    lenient = Scenario("lenient", "x", "test", (), (), ())  # no policy at all: every token passes
    case = Case("lenient", "forged", Request(), TokenSpec(kind="unsigned-with-signature", alg="none"),
                Expectation(401), description="alg none with a signature")  # fmt: skip
    runner = ScenarioRunner(mesh, TokenFactory(keys), SETTINGS)
    result = runner.run(lenient, case)
    assert result.verdict == "failed"
    assert result.detail.startswith("ATTACK ACCEPTED: the mesh answered 200 to token unsigned-with-signature none")
    assert not re.search(r"eyJ[A-Za-z0-9_-]{7,}", result.detail)  # tokens stay masked


def test_bad_path_normalization_is_one_line(tmp_path):
    argv = [sys.executable, "-m", "pytest", "suites/test_security_probe.py", "--path-normalization", "bogus",
            "-p", "no:randomly", "--reports-dir", str(tmp_path)]  # fmt: skip
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == ["ERROR: --path-normalization 'bogus': unknown mode BOGUS; choose from NONE, BASE, MERGE_SLASHES, "
                     "DECODE_AND_MERGE_SLASHES"]  # fmt: skip


KILLED_RUN = """
import os, signal
from meshjwt.keys import KeySet
from meshjwt.security import probe
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets.local import LocalMesh
mesh = LocalMesh(Settings(timeouts=Timeouts.of(LocalMesh.default_timeouts)), KeySet(("RS256",)).jwks_json())
mesh.start()
probe.start_backends(mesh, 10)
print(" ".join(str(b.directory) for b in mesh.backends), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_backends_and_their_workers_die_with_a_killed_run(tmp_path):
    missing = [reason for name in BACKENDS if (reason := missing_reason(name))]
    if missing:
        pytest.skip("; ".join(missing))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", KILLED_RUN], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == -9, result.stderr
    directories = result.stdout.split()
    assert len(directories) == 2 and all(d.startswith(str(tmp_path)) for d in directories)
    outcome = converge(lambda: Response(200, body="\n".join(processes_mentioning(str(tmp_path)))),
                       lambda r: r.body or None, Timeouts(converge=5, poll_interval=0.05, consecutive=1))  # fmt: skip
    assert outcome.passed, f"still running after the run was killed: {outcome.last.body}"
    assert not any(Path(d).exists() for d in directories)


def test_a_mesh_that_fetches_the_jku_url_fails_the_case_even_if_it_refuses(mesh, keys):
    """Issue 17: the attacker's server counts requests; before, a mesh that fetched jku but refused the token
    passed."""
    scenario = load_file(BUILTIN_DIR / "06-token-attacks.yaml")[0]
    runner = ScenarioRunner(mesh, TokenFactory(keys), SETTINGS)
    for name in ("jku-attacker-jwks", "x5u-attacker-chain"):
        case = next(c for c in scenario.cases if c.name == name)
        url = runner.mint(case.token, runner.variables(), case.id)  # serves the attacker's files
        assert url
        honest = runner.run(scenario, case)
        assert honest.verdict == "passed", honest.detail
        served = runner.attacker_url("ATTACKER_JWKS_URL" if name.startswith("jku") else "ATTACKER_X5U_URL")

        class Fetching:  # the same mesh, but it follows the URL a token names before answering
            target = served.split("jwks.meshjwt.test", 1)[1]

            def __getattr__(self, item):
                return getattr(mesh, item)

            def request_many(self, requests):
                target = self.target
                conn = http.client.HTTPConnection("127.0.0.1", mesh.ports["external-http"], timeout=5)
                conn.request("GET", target)
                conn.getresponse().read()
                conn.close()
                return mesh.request_many(requests)

        runner.mesh = Fetching()
        runner.results.clear()
        fetched = runner.run(scenario, case)
        runner.mesh = mesh
        assert fetched.verdict == "failed" and fetched.detail.startswith("URL FETCHED: the mesh sent")
        assert fetched.outcome is not None and fetched.outcome.last.status == 401  # refused, and still failed


def test_the_x5u_chain_is_a_real_certificate_chain_for_the_attackers_key(keys):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    tokens = TokenFactory(keys)
    leaf, ca = x509.load_pem_x509_certificates(tokens.attacker_x5u_pem().encode())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        tokens.attacker.private.public_key().public_bytes(serialization.Encoding.DER, spki)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
