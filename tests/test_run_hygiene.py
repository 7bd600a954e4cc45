"""Whole runs in a subprocess: nothing is left running after a pass, a failure, Ctrl-C or even SIGKILL;
and (in process, with pytester) bad input ends the run with one line naming the cause and a non-zero exit."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from live_processes import processes_mentioning

from meshjwt.localmesh.ports import free_port, is_listening

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]
FAILING = """\
apiVersion: meshjwt.conformance/v1alpha1
kind: Scenario
name: never-matches
section: a case whose expectation cannot hold
cases:
  - {name: impossible, token: none, expect: {status: 299}}
"""
UNSUPPORTED = """\
apiVersion: meshjwt.conformance/v1alpha1
kind: Scenario
name: uses-principals
section: an mTLS principal the local mesh cannot model
manifests:
  - inline:
      apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: by-principal, namespace: foo}
      spec:
        rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]}]
cases:
  - {name: any, token: none, expect: {status: 200}}
"""


def wait_until_gone(marker: str, ports: list[int], timeout: float = 5.0) -> None:
    """Poll until no process mentions ``marker`` and no port is bound. A dying process loses its command
    line (its memory is released) before the kernel closes its sockets, so both are polled."""
    deadline = time.monotonic() + timeout
    while (processes_mentioning(marker) or any(is_listening(p) for p in ports)) and time.monotonic() < deadline:
        time.sleep(0.05)


class Run:
    """A pytest run of the suites in a subprocess, with a private TMPDIR and fixed listener ports."""

    def __init__(self, tmp_path: Path, *args: str, tmp: Path | None = None) -> None:
        self.tmp = tmp or tmp_path / "run-tmp"
        self.tmp.mkdir(exist_ok=True)
        self.ports = [free_port(), free_port()]
        self.argv = [sys.executable, "-m", "pytest", "suites", "-q", "--reports-dir", str(tmp_path / "reports"),
                     "--local-sidecar-port", str(self.ports[0]), "--local-gateway-port", str(self.ports[1]), *args]
        self.env = {**os.environ, "TMPDIR": str(self.tmp)}

    def run(self, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip

    def assert_clean(self) -> None:
        wait_until_gone(str(self.tmp), self.ports)
        assert processes_mentioning(str(self.tmp)) == []
        assert not [p for p in self.ports if is_listening(p)], f"listener ports still bound: {self.ports}"
        assert list(self.tmp.iterdir()) == [], "the run directory is removed"

    def wait_until_mesh_is_up(self, proc: subprocess.Popen, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not all(is_listening(p) for p in self.ports):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the local mesh did not come up"
            time.sleep(0.02)


@pytest.mark.integration
def test_clean_after_a_passing_run(tmp_path):
    run = Run(tmp_path, "-k", "path-exclusion")
    result = run.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 passed" in result.stdout
    run.assert_clean()


@pytest.mark.integration
def test_clean_after_a_failing_run_and_no_token_in_any_output(tmp_path):
    # with no RequestAuthentication, httpbin echoes the Authorization header: the worst case for leaks
    manifest = ROOT / "manifests" / "scenarios" / "ra-httpbin-inline.yaml"  # its inline JWKS holds HS secrets
    with_keys = FAILING.replace("cases:", f"manifests:\n  - file: {manifest}\ncases:")
    echoed = "  - {name: echoed-token, token: {kind: valid, in: {header: x-echo}}, expect: {status: 299}}\n"
    (tmp_path / "fail.yaml").write_text(with_keys + echoed)
    run = Run(tmp_path, "--scenarios", str(tmp_path / "fail.yaml"), "-k", "never-matches", "--timeout-converge", "0.3")
    result = run.run()
    assert result.returncode == 1
    assert "never-matches/impossible: expected 299" in result.stdout
    assert "never-matches/echoed-token: expected 299; last response 200" in result.stdout
    outputs = [result.stdout, result.stderr, *(p.read_text() for p in (tmp_path / "reports").rglob("*") if p.is_file())]
    assert len(outputs) >= 5, "stdout, stderr, junit.xml, the report, artifacts"
    for text in outputs:
        assert not re.search(r"eyJ[A-Za-z0-9_-]{20,}", text), "a token reached the output"
        assert not re.search(r'\\*"k\\*"\s*:\s*\\*"[A-Za-z0-9_-]{20,}', text), "an HMAC secret reached the output"
    run.assert_clean()


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_clean_after_interrupt_or_kill_mid_run(tmp_path, sig):
    (tmp_path / "fail.yaml").write_text(FAILING)
    run = Run(tmp_path, "--scenarios", str(tmp_path / "fail.yaml"), "-k", "never-matches", "--timeout-converge", "60")
    proc = run.start()
    try:
        run.wait_until_mesh_is_up(proc)
        assert processes_mentioning(str(run.tmp)), "envoy and the workloads run while the case converges"
        proc.send_signal(sig)
        output = proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 2), output
    if sig == signal.SIGKILL:  # no cleanup code ran: the children die with their parent (PR_SET_PDEATHSIG)
        wait_until_gone(str(run.tmp), run.ports)
        assert processes_mentioning(str(run.tmp)) == []
        assert not [p for p in run.ports if is_listening(p)], f"listener ports still bound: {run.ports}"
        (left,) = run.tmp.iterdir()  # only its run folder is left, private; the next run sweeps it
        assert oct(left.stat().st_mode & 0o777) == "0o700" and not (left / "pki" / "server-key.pem").exists()
        result = Run(tmp_path, "-k", "products-0-no-token", tmp=run.tmp).run()
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert "Traceback" not in output
    run.assert_clean()


@pytest.mark.integration
def test_toxs_interrupt_sequence_leaves_nothing_and_no_traceback(tmp_path):
    """A terminal's Ctrl-C reaches tox and pytest; tox sends SIGINT again at once and SIGTERM 0.3 s later."""
    (tmp_path / "fail.yaml").write_text(FAILING)
    run = Run(tmp_path, "--scenarios", str(tmp_path / "fail.yaml"), "-k", "never-matches", "--timeout-converge", "60")
    stale = tmp_path / "reports" / "local"
    stale.mkdir(parents=True)
    for name in ("conformance-report.yaml", "conformance-report.html", "junit.xml"):
        (stale / name).write_text("from an earlier run")
    proc = run.start()
    try:
        run.wait_until_mesh_is_up(proc)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    run.assert_clean()
    assert not (stale / "conformance-report.yaml").exists(), "no case had a result: no report, and no stale one"
    assert "from an earlier run" not in (stale / "junit.xml").read_text()


def one_line_error(result: pytest.RunResult, fragment: str) -> None:
    output = [*result.outlines, *result.errlines]
    # pytest repeats a failure's message in its short summary ("FAILED id - msg"): that copy is not counted
    lines = [line for line in output if fragment in line and not line.startswith("FAILED ")]
    assert len(lines) == 1, "\n".join(output)
    assert "Traceback" not in "\n".join(output)


class InProcess:
    """Bad input needs no extra interpreter: the suites in process (pytester), their run folder in ``tmp``."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.pytester = pytester
        self.tmp = tmp_path / "run-tmp"
        self.tmp.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(self.tmp))
        self.ports = [free_port(), free_port()]
        self.reports = tmp_path / "reports"

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(str(ROOT / "suites"), "-q", "--reports-dir", str(self.reports),
                                       "--local-sidecar-port", str(self.ports[0]),
                                       "--local-gateway-port", str(self.ports[1]), *args)  # fmt: skip

    def assert_clean(self) -> None:
        Run.assert_clean(self)  # type: ignore[arg-type] - same attributes: tmp, ports


@pytest.fixture
def in_process(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> InProcess:
    return InProcess(pytester, monkeypatch, tmp_path)


def test_unknown_target(in_process):
    result = in_process.run("--target", "minikube")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    one_line_error(result, "unknown --target 'minikube': choose one of cluster, kind, local")


def test_malformed_scenario_file_names_file_and_line(in_process, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(FAILING.replace("status: 299", "status: OK"))
    result = in_process.run("--scenarios", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    one_line_error(result, f"{bad}:6: at cases/0/expect/status: 'OK' is not of type 'integer'")
    in_process.assert_clean()


def test_missing_envoy_binary(in_process, tmp_path):
    result = in_process.run("--envoy-path", str(tmp_path / "no-envoy"), "-k", "path-exclusion")
    assert result.ret == 3
    one_line_error(result, "does not exist or is not executable (--envoy-path)")
    in_process.assert_clean()


def test_port_in_use(in_process):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", in_process.ports[1]))
        busy.listen()
        result = in_process.run("-k", "path-exclusion")
    assert result.ret == 3
    one_line_error(result, f"port 127.0.0.1:{in_process.ports[1]} for the local gateway listener is already in use")
    assert processes_mentioning(str(in_process.tmp)) == []


@pytest.mark.integration
def test_unsupported_istio_field_fails_naming_it(in_process, tmp_path):
    (tmp_path / "principals.yaml").write_text(UNSUPPORTED)
    result = in_process.run("--scenarios", str(tmp_path / "principals.yaml"), "-k", "uses-principals")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    one_line_error(result, "spec.rules[0].from[0].source.principals is not supported by the local mesh")
    in_process.assert_clean()
