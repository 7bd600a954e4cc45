"""The policy playground, as a user runs it: start on a folder, answer, reload on change, stop on Ctrl-C."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_processes import live_mentioning, processes_mentioning

from meshjwt.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
RA = (ROOT / "manifests" / "scenarios" / "ra-httpbin-inline.yaml").read_text()
REQUIRE_JWT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["${ISSUER}/*"]}}]}]
"""


class Playground:
    """The playground child process, its output lines (read by a thread) and what it printed."""

    def __init__(self, policies: Path, tmp: Path, *extra: str) -> None:
        env = {**os.environ, "TMPDIR": str(tmp)}  # its mesh workdir lands in tmp: easy to check it is gone
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshjwt", "playground", "--policies", str(policies), "--poll-interval", "0.05",
             *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        stderr = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no line matching {pattern!r}; output: {self.lines[-20:]}; stderr: {stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Playground]]:
    started: list[Playground] = []

    def run(policies: Path, *extra: str) -> Playground:
        started.append(Playground(policies, tmp_path, *extra))
        return started[-1]

    yield run
    for playground in started:
        playground.stop()


def get(port: int, host: str, path: str, token: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def poll_status(expected: int, send: Callable[[], int], timeout: float = 15.0) -> None:
    """Until ``send()`` answers ``expected`` (the reload's effect), within ``timeout``; a connection closed
    while Envoy swaps its listener is an answer not yet converged."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            seen = send()
        except (ConnectionError, http.client.HTTPException) as exc:  # a listener drained by the reload
            seen = repr(exc)
        if seen == expected:
            return
        time.sleep(0.02)
    raise AssertionError(f"still {seen} after {timeout}s, expected {expected}")


@pytest.mark.integration
def test_playground_answers_reloads_and_stops(start: Callable[..., Playground], tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ra.yaml").write_text(RA)
    playground = start(policies)
    sidecar = int(playground.wait_for_line(r"^sidecar: http://127\.0\.0\.1:(\d+)").group(1))
    gateway = int(playground.wait_for_line(r"^gateway: http://127\.0\.0\.1:(\d+)").group(1))
    token = playground.wait_for_line(r"export TOKEN=(\S+)").group(1)
    envoy = playground.wait_for_line(r"^envoy pid: (\d+); workdir: (\S+)")
    envoy_pid, workdir = int(envoy.group(1)), envoy.group(2)
    playground.wait_for_line(r"^watching ")
    assert "applied: 1 resources (RequestAuthentication foo/jwt-example)" in playground.lines
    assert any("curl" in line and f":{sidecar}/headers" in line and "$TOKEN" in line for line in playground.lines)
    assert workdir.startswith(str(tmp_path)) and envoy_pid in live_mentioning(workdir)

    host = "httpbin.foo:8000"
    assert get(sidecar, host, "/headers") == 200  # RequestAuthentication alone: no token passes
    assert get(sidecar, host, "/headers", "not.a.token") == 401
    assert get(sidecar, host, "/headers", token) == 200  # the printed token is valid
    assert get(gateway, "bookinfo.example.com", "/productpage") == 200

    mark = len(playground.lines)
    (policies / "require-jwt.yaml").write_text(REQUIRE_JWT)
    poll_status(403, lambda: get(sidecar, host, "/headers"))
    assert get(sidecar, host, "/headers", token) == 200
    playground.wait_for_line(r"^reloaded: 2 resources", start=mark)

    mark = len(playground.lines)
    (policies / "broken.yaml").write_text("kind: [\n")
    playground.wait_for_line(r"^reload failed \(previous policies still apply\): .*broken\.yaml:\d+", start=mark)
    assert get(sidecar, host, "/headers") == 403 and get(sidecar, host, "/headers", token) == 200
    assert playground.proc.poll() is None

    playground.proc.send_signal(signal.SIGINT)
    assert playground.proc.wait(timeout=20) == 0
    playground.wait_for_line(r"^playground stopped$")
    assert processes_mentioning(workdir) == []  # Envoy and the workloads are gone
    assert not Path(workdir).exists()


@pytest.mark.integration
def test_the_examples_policies_work_as_documented(start: Callable[..., Playground], tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "report-and-playground.md").read_text()
    blocks = re.findall(r"```yaml\n(apiVersion: security.*?)```", docs, re.S)
    policies = ROOT / "examples" / "policies"
    assert blocks == [(policies / name).read_text() for name in ("ra.yaml", "require-jwt.yaml")]
    playground = start(policies)
    sidecar = int(playground.wait_for_line(r"^sidecar: http://127\.0\.0\.1:(\d+)").group(1))
    token = playground.wait_for_line(r"export TOKEN=(\S+)").group(1)
    playground.wait_for_line(r"^watching ")
    applied = "applied: 2 resources (RequestAuthentication foo/jwt-example, AuthorizationPolicy foo/require-jwt)"
    assert applied in playground.lines and applied in docs
    assert get(sidecar, "httpbin.foo:8000", "/headers") == 403  # require-jwt: no token, no entry
    assert get(sidecar, "httpbin.foo:8000", "/headers", token) == 200
    assert get(sidecar, "httpbin.foo:8000", "/headers", "not.a.token") == 401
    playground.proc.send_signal(signal.SIGINT)
    assert playground.proc.wait(timeout=20) == 0


@pytest.mark.integration
def test_sigterm_stops_cleanly(start: Callable[..., Playground], tmp_path: Path) -> None:
    playground = start(tmp_path)  # an empty folder: the mesh without policies
    workdir = playground.wait_for_line(r"^envoy pid: \d+; workdir: (\S+)").group(1)
    playground.wait_for_line(r"^watching ")
    playground.proc.send_signal(signal.SIGTERM)
    assert playground.proc.wait(timeout=20) == 0
    assert processes_mentioning(workdir) == [] and not Path(workdir).exists()


@pytest.fixture
def bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The playground command called in process: exit code 2, one line on stderr, nothing left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the mesh's run folder lands in tmp_path

    def run(*args: str) -> str:
        assert main(["playground", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert list(tmp_path.glob("meshjwt-local-*")) == [] and processes_mentioning(str(tmp_path)) == []
        return err

    return run


def test_missing_folder(tmp_path: Path, bad_input) -> None:
    assert "no such policy folder" in bad_input("--policies", str(tmp_path / "nope"))


def test_malformed_yaml_names_file_and_line(tmp_path: Path, bad_input) -> None:
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: [\n")
    assert re.search(r"p\.yaml:\d+: not valid YAML", bad_input("--policies", str(tmp_path)))


@pytest.mark.integration
def test_policy_the_mesh_refuses_at_start(tmp_path: Path, bad_input) -> None:
    (tmp_path / "p.yaml").write_text(REQUIRE_JWT.replace("action: ALLOW", "action: ALLOW\n  bogus: 1"))
    assert "spec.bogus" in bad_input("--policies", str(tmp_path))


def test_port_in_use(tmp_path: Path, bad_input) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert "already in use" in bad_input("--policies", str(tmp_path), "--gateway-port", port)


def test_version_command(capsys: pytest.CaptureFixture[str]) -> None:
    from meshjwt import __version__

    assert main(["version"]) == 0 and capsys.readouterr().out.strip() == f"mesh-jwt-conformance {__version__}"
