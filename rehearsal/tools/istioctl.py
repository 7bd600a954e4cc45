"""A stand-in for ``istioctl`` in rehearsals: ``install`` and ``version``, nothing else.

    python -m rehearsal.tools.istioctl [--istio-version 1.29.2] install -y -f OVERLAY [--set k=v]
        [--kubeconfig K] [--context C] [--readiness-timeout 600s]
    python -m rehearsal.tools.istioctl version [--remote[=false]] [--short] [-o json|yaml]

The Istio version is ``--istio-version`` (baked in by a wrapper script) or ``$MESHJWT_REHEARSAL_ISTIO_VERSION``
(pinned per rehearsal). ``install`` applies :func:`rehearsal.istio.install.install_components` through the
kubeconfig's API server (the namespace if absent, then create or update; CRDs first, then
re-discovery), then polls the istiod and
gateway Deployments until ready within ``--readiness-timeout``. Failures are one line and exit 1;
any other command or flag is ``not simulated`` and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

VERSION_ENV = "MESHJWT_REHEARSAL_ISTIO_VERSION"
POLL_INTERVAL = 0.5
ICONS = {"Istio core": "⛵️", "Istiod": "🧠", "Ingress gateways": "🛬"}


class Usage(Exception):
    """Arguments this stand-in does not simulate (exit 2)."""


class Failure(Exception):
    """A failed command (one line, exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Usage(message)


def parse_duration(text: str) -> float:
    """Go duration (``600s``, ``10m``, ``1m30s``, ``500ms``) → seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise Failure(f'invalid argument "{text}" for "--readiness-timeout" flag: time: invalid duration "{text}"')
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "t"):
        return True
    if text.lower() in ("false", "0", "f"):
        return False
    raise Usage(f"invalid boolean {text!r}")


def parser() -> argparse.ArgumentParser:
    """The command line this stand-in understands."""
    top = _Parser(prog="istioctl", add_help=False)
    top.add_argument("--istio-version", dest="istio_version")
    sub = top.add_subparsers(dest="command", parser_class=_Parser)
    install = sub.add_parser("install", add_help=False)
    install.add_argument("-y", "--skip-confirmation", action="store_true", dest="yes")
    install.add_argument("-f", "--filename", action="append", default=[], dest="files")
    install.add_argument("-s", "--set", action="append", default=[], dest="sets")
    install.add_argument("--kubeconfig", "-c")
    install.add_argument("--context")
    install.add_argument("--readiness-timeout", default="300s")
    version = sub.add_parser("version", add_help=False)
    version.add_argument("--remote", type=parse_bool, nargs="?", const=True, default=False)
    version.add_argument("-s", "--short", type=parse_bool, nargs="?", const=True, default=False)
    version.add_argument("-o", "--output", choices=["json", "yaml"])
    version.add_argument("--kubeconfig", "-c")
    version.add_argument("--context")
    return top


def istio_version(args: argparse.Namespace) -> str:
    version = args.istio_version or os.environ.get(VERSION_ENV)
    if not version:
        raise Failure(f"no Istio version for the istioctl stand-in: set ${VERSION_ENV} or pass --istio-version")
    return version.removeprefix("v")


def set_path(tree: dict[str, Any], assignment: str) -> None:
    """Apply ``--set a.b.c=value`` (a path under the IstioOperator's spec) to ``tree``."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise Failure(f"--set {assignment!r}: expected path=value")
    value = yaml.safe_load(raw) if raw else ""
    node = tree.setdefault("spec", {})
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise Failure(f"--set {assignment!r}: {key} is not a mapping")
    node[keys[-1]] = value


def load_overlay(files: Sequence[str], sets: Sequence[str]) -> dict[str, Any]:
    """The IstioOperator of ``-f`` files (merged in order) and ``--set`` assignments."""
    from rehearsal.istio.values import merge

    overlay: dict[str, Any] = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "spec": {}}
    for name in files:
        path = Path(name)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise Failure(f"open {name}: no such file or directory") from None
        except (OSError, yaml.YAMLError) as exc:
            raise Failure(f"could not read {name}: {' '.join(str(exc).split())}") from None
        if not isinstance(loaded, dict) or loaded.get("kind") != "IstioOperator":
            raise Failure(f"{name} is not an IstioOperator (kind: IstioOperator)")
        overlay = merge(overlay, loaded)
    for assignment in sets:
        set_path(overlay, assignment)
    return overlay


def deployment_ready(obj: dict[str, Any] | None) -> bool:
    """Rolled out the way ``kubectl rollout status`` judges it, with at least one available replica."""
    if not obj:
        return False
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    meta = obj.get("metadata") or {}
    wanted = spec.get("replicas", 1)
    updated = status.get("updated_replicas", status.get("updatedReplicas")) or 0
    available = status.get("available_replicas", status.get("availableReplicas")) or 0
    observed = status.get("observed_generation", status.get("observedGeneration")) or 0
    return (
        (meta.get("generation") or 0) <= observed
        and updated >= wanted
        and (status.get("replicas") or 0) <= updated
        and available >= max(updated, 1 if wanted else 0)
    )


def wait_ready(
    get: Callable[[], dict[str, Any] | None], what: str, deadline: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll ``get`` until the Deployment is ready or ``deadline`` (monotonic) passes."""
    while True:
        if deployment_ready(get()):
            return
        if time.monotonic() >= deadline:
            raise Failure(f"timed out waiting for Deployment {what} to be ready")
        sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


def install(args: argparse.Namespace, out: Callable[[str], None]) -> None:
    from rehearsal.istio.golden import GoldenMissing
    from rehearsal.istio.install import install_components
    from rehearsal.istio.values import NotSimulated

    version = istio_version(args)
    timeout = parse_duration(args.readiness_timeout)
    overlay = load_overlay(args.files, args.sets)
    if "istioctl-install" in (os.environ.get("MESHJWT_REHEARSAL_FAIL") or "").split(","):
        raise Failure("failed to install manifests: Istiod encountered an error: failed to wait for resource: "
                      "resources not ready after 10m0s: context deadline exceeded (injected by MESHJWT_REHEARSAL_FAIL)")
    try:
        components = install_components(overlay, version)
    except NotSimulated as exc:
        raise Failure(f"not simulated: {exc}") from None
    except GoldenMissing as exc:
        raise Failure(str(exc)) from None
    profile = (overlay.get("spec") or {}).get("profile") or "default"
    if not args.yes:
        out(f'This will install the Istio {version} profile "{profile}" into the cluster. Proceed? (y/N)')
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise Failure("cancelled")
    from rehearsal.tools.kubeapi import KubeApi

    deadline = time.monotonic() + timeout
    try:
        with KubeApi(args.kubeconfig, args.context) as api:
            for name, objects in components:
                for obj in objects:
                    try:
                        api.apply(obj, update=obj["kind"] != "Namespace")  # istioctl only creates it
                    except Exception as exc:
                        where = "/".join(filter(None, [obj["metadata"].get("namespace"), obj["metadata"]["name"]]))
                        raise Failure(f"failed to apply {obj['kind']} {where}: {_one_line(exc)}") from None
                if any(obj["kind"] == "CustomResourceDefinition" for obj in objects):
                    api.rediscover()
                for obj in objects:
                    if obj["kind"] == "Deployment":
                        meta = obj["metadata"]
                        wait_ready(
                            lambda meta=meta: api.get("apps/v1", "Deployment", meta["name"], meta["namespace"]),
                            f"{meta['namespace']}/{meta['name']}",
                            deadline,
                        )
                out(f"✔ {name} installed {ICONS.get(name, '')}".rstrip())
    except Failure:
        raise
    except Exception as exc:  # the client's errors: ApiException, connection, config
        raise Failure(f"failed to install Istio: {_one_line(exc)}") from None
    out("✔ Installation complete")


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    status = getattr(exc, "status", None)
    return " ".join(f"{status} {text}".split() if status else str(text).split())[:300]


def _long_form(info: dict[str, str]) -> str:
    """Go's ``%#v`` of a version.BuildInfo, as ``istioctl version`` prints it without --short."""
    return (
        f'version.BuildInfo{{Version:"{info["version"]}", GitRevision:"{info["revision"]}", '
        f'GolangVersion:"{info["golang_version"]}", BuildStatus:"{info["status"]}", GitTag:"{info["tag"]}"}}'
    )


def version_command(args: argparse.Namespace, out: Callable[[str], None]) -> None:
    """``istioctl version`` (pkg/version/cobra.go): --remote is off by default, --short keeps the labels."""
    version = istio_version(args)
    client = {"version": version, "revision": "rehearsal", "golang_version": "", "status": "Clean", "tag": version}
    mesh = _mesh_versions(args) if args.remote else None
    if args.output:
        doc: dict[str, Any] = {"clientVersion": client}
        if mesh:
            doc["meshVersion"] = mesh
        out(json.dumps(doc, indent=2) if args.output == "json" else yaml.safe_dump(doc, sort_keys=True).rstrip())
        return
    if args.short:
        out(f"client version: {version}")
        if mesh and len({m["Info"]["version"] for m in mesh}) == 1:
            out(f"control plane version: {mesh[0]['Info']['version']}")
        else:
            for item in mesh or []:
                out(f"{item['Component']} version: {item['Info']['version']}")
        return
    out(f"client version: {_long_form(client)}")
    for item in mesh or []:
        out(f"{item['Component']} version: {_long_form(item['Info'])}")


def _mesh_versions(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """istiod versions read from the cluster (None when it cannot be reached: istioctl then prints the client's)."""
    from rehearsal.istio.settings import istiod_settings
    from rehearsal.tools.kubeapi import KubeApi

    try:
        with KubeApi(args.kubeconfig, args.context) as api:
            deployment = api.get("apps/v1", "Deployment", "istiod", "istio-system")
    except Exception:
        return None
    if not deployment:
        return None
    settings = istiod_settings(deployment)
    info = {
        "version": settings.version,
        "revision": "",
        "golang_version": "",
        "status": "Clean",
        "tag": settings.version,
    }
    return [{"Component": "istiod", "Revision": settings.revision or "default", "Info": info}]


def write_wrapper(path: Path, version: str | None = None, python: str = sys.executable) -> Path:
    """An executable ``istioctl`` for ``--istioctl-path`` running this stand-in (``version`` baked in, or None
    to take ``$MESHJWT_REHEARSAL_ISTIO_VERSION`` at run time)."""
    from rehearsal.tools import write_module_wrapper

    return write_module_wrapper(path, "rehearsal.tools.istioctl", ["--istio-version", version] if version else [],
                                python)  # fmt: skip


def _without_baked_version(argv: Sequence[str]) -> list[str]:
    """The user's arguments: a wrapper's ``--istio-version X`` / ``--istio-version=X`` left out."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--istio-version":
            skip = True
        elif not arg.startswith("--istio-version="):
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Run the stand-in; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
        if args.command == "install":
            install(args, out)
        elif args.command == "version":
            version_command(args, out)
        else:
            raise Usage("no command")
    except Usage:
        print(f"not simulated: {' '.join(_without_baked_version(argv))}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
