"""A stand-in for the ``kind`` CLI: clusters are ``python -m rehearsal.cluster`` processes.

It answers what the kind target and pytest-kind run (``get clusters``, ``create cluster``,
``delete cluster``, ``export kubeconfig``, ``export logs``, ``load docker-image``, ``version``), keeping
each cluster's state under ``$MESHJWT_REHEARSAL_HOME/clusters/<name>``. Failures can be injected with
``MESHJWT_REHEARSAL_FAIL=create|delete|export-kubeconfig`` to rehearse the targets' error paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

VERSION = "v0.32.0"


def home() -> Path:
    return Path(os.environ.get("MESHJWT_REHEARSAL_HOME") or Path.home() / ".cache" / "meshjwt-rehearsal")


def cluster_dir(name: str) -> Path:
    return home() / "clusters" / name


def alive(name: str) -> int | None:
    """The pid of the cluster's process if it runs, else None."""
    try:
        pid = int(json.loads((cluster_dir(name) / "state.json").read_text())["pid"])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, KeyError):
        return None


def fail_injected(step: str) -> bool:
    return step in (os.environ.get("MESHJWT_REHEARSAL_FAIL") or "").split(",")


def err(message: str) -> int:
    print(f"ERROR: {message}", file=sys.stderr)
    return 1


def create(name: str, kubeconfig: str | None, config: str | None, wait: str | None) -> int:
    if alive(name):
        return err(f'failed to create cluster: node(s) already exist for a cluster with the name "{name}"')
    directory = cluster_dir(name)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    print(f'Creating cluster "{name}" ... (rehearsal: a simulated cluster, no nodes run)', file=sys.stderr)
    if fail_injected("create"):
        return err("failed to create cluster: command \"docker run --name " + name + "-control-plane\" failed "
                   "with error: exit status 125 (injected by MESHJWT_REHEARSAL_FAIL)")
    argv = [sys.executable, "-m", "rehearsal.cluster", "--dir", str(directory), "--name", name]
    if config:
        argv += ["--kind-config", config]
    log = open(directory / "process.log", "ab")  # noqa: SIM115 - handed to the detached child
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                            start_new_session=True)  # fmt: skip
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    if line.strip() != b"ready":
        proc.kill()
        tail = (directory / "process.log").read_text(errors="replace").strip().splitlines()[-1:]
        return err(f"failed to create cluster: the simulated cluster did not start: {' '.join(tail)}")
    if kubeconfig:
        _export(name, kubeconfig)
    print(f" ✓ Ensuring node image (simulated) · ✓ Ready after 0s; kubectl --context kind-{name}", file=sys.stderr)
    return 0


def _export(name: str, kubeconfig: str) -> None:
    state = json.loads((cluster_dir(name) / "state.json").read_text())
    Path(kubeconfig).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(state["kubeconfigs"]["data"], kubeconfig)


def delete(name: str) -> int:
    print(f'Deleting cluster "{name}" ...', file=sys.stderr)
    if fail_injected("delete"):
        return err("failed to delete cluster (injected by MESHJWT_REHEARSAL_FAIL)")
    pid = alive(name)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while alive(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(name):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(cluster_dir(name), ignore_errors=True)
    return 0


def clusters() -> list[str]:
    root = home() / "clusters"
    return sorted(p.name for p in root.iterdir() if alive(p.name)) if root.is_dir() else []


def export_logs(name: str, directory: str) -> int:
    if not alive(name):
        return err(f"unknown cluster \"{name}\"")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    source = cluster_dir(name)
    for path in [source / "cluster.log", source / "process.log", *(source / "dataplane").glob("*.log")]:
        if path.is_file():
            shutil.copyfile(path, target / path.name)
    print(f"Exported logs for cluster \"{name}\" to:\n{target}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kind", description="kind stand-in of the rehearsal")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get")
    get.add_argument("what", choices=["clusters", "kubeconfig"])
    get.add_argument("--name", default="kind")
    for verb in ("create", "delete"):
        one = sub.add_parser(verb)
        one.add_argument("what", choices=["cluster"])
        one.add_argument("--name", default="kind")
        one.add_argument("--kubeconfig")
        one.add_argument("--image")
        one.add_argument("--config")
        one.add_argument("--wait")
    export = sub.add_parser("export")
    export.add_argument("what", choices=["kubeconfig", "logs"])
    export.add_argument("directory", nargs="?")
    export.add_argument("--name", default="kind")
    export.add_argument("--kubeconfig")
    load = sub.add_parser("load")
    load.add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"kind {VERSION} rehearsal stand-in (simulated clusters)")
        return 0
    if args.command == "load":
        return 0  # images are not pulled in a simulated cluster
    if args.command == "get":
        if args.what == "clusters":
            found = clusters()
            print("\n".join(found) if found else "No kind clusters found.", file=sys.stdout if found else sys.stderr)
            return 0
        state = json.loads((cluster_dir(args.name) / "state.json").read_text())
        print(Path(state["kubeconfigs"]["data"]).read_text())
        return 0
    if args.command == "create":
        return create(args.name, args.kubeconfig, args.config, args.wait)
    if args.command == "delete":
        return delete(args.name)
    if args.what == "kubeconfig":
        if fail_injected("export-kubeconfig"):
            return err("failed to export kubeconfig (injected by MESHJWT_REHEARSAL_FAIL)")
        if not alive(args.name):
            return err(f'could not locate any control plane nodes for cluster named "{args.name}"')
        _export(args.name, args.kubeconfig or str(Path.home() / ".kube" / "config"))
        return 0
    return export_logs(args.name, args.directory or ".")


if __name__ == "__main__":
    sys.exit(main())
