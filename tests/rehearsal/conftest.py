"""Fixtures of the target rehearsals: simulated clusters (``python -m rehearsal.cluster``), stand-in binaries and
settings for the kind and cluster targets. Run by ``tox -e rehearsal``; they need a real kubectl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from istio_golden import need

from meshjwt.keys import KeySet
from meshjwt.kube.versions import DEFAULT_ISTIO, istio_release
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets import target_class
from rehearsal.__main__ import LEG_KUBECTL, find_kubectl, wrappers
from rehearsal.tools import REPO

FAST = Timeouts(start=30, install=60, deploy=60, ready_poll=0.05, apply=20, converge=10, request=5,
                poll_interval=0.05)  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_discovery_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl caches discovery by host:port; simulated servers reuse ports with other kinds."""
    monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kubecache"))


@pytest.fixture(scope="session")
def golden() -> Path:
    return need("")


@pytest.fixture(scope="session")
def kubectl() -> str:
    try:
        return find_kubectl(LEG_KUBECTL["kind"][0])[0]
    except SystemExit as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def jwks() -> str:
    return KeySet().jwks_json()


def settings(target: str, reports: Path, timeouts: Timeouts = FAST, **options: object) -> Settings:
    """Settings of a target run with fast named timeouts, writing under ``reports``."""
    return Settings(target=target, timeouts=timeouts, reports_dir=reports,
                    target_options=target_class(target).Options.from_values(options))


class SimCluster:
    """One ``python -m rehearsal.cluster`` process and what it wrote (kubeconfigs, gateway port)."""

    def __init__(self, directory: Path, *args: str, env: dict[str, str] | None = None) -> None:
        argv = [sys.executable, "-m", "rehearsal.cluster", "--dir", str(directory), "--name", "t", *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                     start_new_session=True)  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready", "the simulated cluster did not start"
        self.state = json.loads((directory / "state.json").read_text())

    def kubeconfig(self, which: str = "data") -> str:
        return self.state["kubeconfigs"][which]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def managed_mesh(tmp_path: Path, golden: Path, kubectl: str) -> Iterator[SimCluster]:
    """A simulated managed mesh: data-plane and control-plane API stand-ins, a tenant limited to ``qual-*``."""
    cluster = SimCluster(tmp_path / "managed", "--split", "--tenant-prefix", "qual-")
    yield cluster
    cluster.stop()


@pytest.fixture
def kind_tools(tmp_path: Path, golden: Path, kubectl: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """kind/istioctl/docker stand-ins on PATH, a private cluster home and binary cache; kind options."""
    bin_dir = tmp_path / "bin"
    wrappers(bin_dir, istio_release(DEFAULT_ISTIO).patch)
    monkeypatch.setenv("MESHJWT_REHEARSAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return {"kind_path": str(bin_dir / "kind"), "istioctl_path": str(bin_dir / "istioctl"), "kubectl_path": kubectl}


def clusters_left(kind_path: str) -> list[str]:
    return subprocess.run([kind_path, "get", "clusters"], capture_output=True, text=True).stdout.split()
