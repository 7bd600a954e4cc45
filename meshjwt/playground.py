"""A local policy playground: the reference mesh running the Istio resources of a folder, re-applied on change.

``python -m meshjwt playground --policies DIR`` starts Envoy and the workloads on loopback, applies every
YAML file of ``DIR``, prints the listeners, a valid token and curl lines, then polls ``DIR`` and re-applies
when a file changes. A bad policy is reported in one line and the previous configuration stays in force.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from meshjwt.errors import ConfigError
from meshjwt.keys import KeySet
from meshjwt.localmesh.topology import Topology
from meshjwt.placeholders import substitute
from meshjwt.scenarios.loader import read_resources
from meshjwt.settings import Settings, Timeouts
from meshjwt.targets.local import LocalMesh, LocalOptions
from meshjwt.tokens import DEFAULT_ISSUER, DEFAULT_SUBJECT, TokenFactory
from meshjwt.validate import KUBE_VERSION, check_policies

SIDECAR_HOST = f"httpbin.{Topology().namespace}:8000"
GATEWAY_HOST = "bookinfo.example.com"
Snapshot = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Options:
    """What the ``playground`` command was given."""

    policies: Path
    sidecar_port: int | None = None
    gateway_port: int | None = None
    jwks_fetch_mode: str = "istiod"
    issuer: str = DEFAULT_ISSUER
    poll_interval: float = 0.5


def policy_files(directory: Path) -> list[Path]:
    """The ``.yaml``/``.yml`` files under ``directory``, sorted (hidden files, editor temporaries, skipped)."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such policy folder (--policies)")
    return sorted(
        p for p in directory.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith((".", "#"))
    )  # fmt: skip


def snapshot(directory: Path) -> Snapshot:
    """Name, mtime and size of every policy file: a change to any means "re-apply"."""
    out = []
    for path in policy_files(directory):
        stat = path.stat()
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def load_policies(directory: Path, variables: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every Istio resource of the folder's YAML files (``kind: List`` expanded, ``${VAR}`` substituted), refused
    as ``meshjwt validate`` refuses them (ConfigError: its first line), so that the two agree on every file."""
    files = policy_files(directory)
    problems, _ = check_policies(files, KUBE_VERSION)
    if problems:
        more = f" (and {len(problems) - 1} more: meshjwt validate {directory})" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return [
        substitute(resource, variables, where=str(path))
        for path in policy_files(directory)
        for resource in read_resources(path)
    ]


def describe(resources: list[dict[str, Any]]) -> str:
    names = [f"{r['kind']} {(r.get('metadata') or {}).get('namespace', '-')}/{(r.get('metadata') or {}).get('name')}"
             for r in resources]  # fmt: skip
    return f"{len(resources)} resources" + (f" ({', '.join(names)})" if names else "")


class Playground:
    """The running mesh, the folder it mirrors, and the token to try it with."""

    def __init__(self, options: Options, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        settings = Settings(
            target="local", jwks_fetch_mode=options.jwks_fetch_mode, timeouts=Timeouts.of(LocalMesh.default_timeouts),
            target_options=LocalOptions(local_sidecar_port=options.sidecar_port,
                                        local_gateway_port=options.gateway_port),
        )  # fmt: skip
        keys = KeySet()
        self.tokens = TokenFactory(keys, issuer=options.issuer)
        self.mesh = LocalMesh(settings, keys.jwks_json())
        self.applied: Snapshot | None = None

    def variables(self) -> dict[str, str]:
        return {"ISSUER": self.tokens.issuer, **self.mesh.variables()}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        """Read the policies (a bad file fails before anything starts), start the mesh, apply them."""
        seen = snapshot(self.options.policies)
        resources = load_policies(self.options.policies, self.variables())
        self.mesh.start()
        self.mesh.apply(resources)
        self.applied = seen
        self.say(self.banner(resources))

    def banner(self, resources: list[dict[str, Any]]) -> str:
        sidecar = f"http://127.0.0.1:{self.mesh.ports['listener:sidecar']}"
        gateway = f"http://127.0.0.1:{self.mesh.ports['listener:gateway']}"
        token = self.tokens.valid("RS256")
        bearer = '"Authorization: Bearer $TOKEN"'
        envoy = self.mesh.envoy.proc.pid if self.mesh.envoy and self.mesh.envoy.proc else "-"
        return "\n".join([
            f"meshjwt playground: local reference mesh, policies from {self.options.policies}",
            f"applied: {describe(resources)}",
            f"sidecar: {sidecar}  (httpbin, in mesh; Host: {SIDECAR_HOST})",
            f"gateway: {gateway}  (ingress gateway, Bookinfo routes; Host: {GATEWAY_HOST})",
            f"issuer: {self.tokens.issuer}  (request principal {self.tokens.issuer}/{DEFAULT_SUBJECT})",
            f"jwks fetch mode: {self.options.jwks_fetch_mode}; in policies ${{ISSUER}}, ${{JWKS}}, "
            "${NAMESPACE}... are substituted",
            "token (RS256, valid 1 h; signed with a throwaway key made for this run only):",
            f"  export TOKEN={shlex.quote(token)}",
            "try (after the export line):",
            f"  curl -i -H 'Host: {SIDECAR_HOST}' {sidecar}/headers",
            f"  curl -i -H 'Host: {SIDECAR_HOST}' -H {bearer} {sidecar}/headers",
            f"  curl -i -H 'Host: {GATEWAY_HOST}' {gateway}/productpage",
            f"  curl -i -H 'Host: {GATEWAY_HOST}' -H {bearer} {gateway}/api/v1/products/0",
            f"envoy pid: {envoy}; workdir: {self.mesh.workdir}",
            f"watching {self.options.policies} (Ctrl-C to stop)",
        ])  # fmt: skip

    def reload_if_changed(self) -> str | None:
        """Re-apply if any policy file changed; the line to print, or None when nothing changed."""
        try:
            seen = snapshot(self.options.policies)
        except (OSError, ConfigError) as exc:
            return f"reload failed (previous policies still apply): {exc}"
        if seen == self.applied:
            return None
        self.applied = seen  # a bad version is reported once, not at every poll
        try:  # LocalMesh.apply leaves the previous configuration in force when it refuses
            resources = load_policies(self.options.policies, self.variables())
            self.mesh.apply(resources)
        except Exception as exc:  # noqa: BLE001 - any bad policy is one line; the playground keeps going
            return f"reload failed (previous policies still apply): {type(exc).__name__}: {one_line(exc)}"
        return f"reloaded: {describe(resources)}"

    def watch(self, stop: Callable[[], bool]) -> None:
        """Poll the folder until ``stop()`` says so, printing what each change did."""
        while not stop():
            message = self.reload_if_changed()
            if message:
                self.say(message)
            time.sleep(self.options.poll_interval)

    def stop(self) -> None:
        self.mesh.stop()


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Stop(Exception):
    """SIGTERM arrived: leave as for Ctrl-C."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


def run(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Start, watch until Ctrl-C or SIGTERM, stop. Exit 0; 2 (one line on stderr) for bad input."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _raise_stop)
    # Ctrl-C stops it even where SIGINT came in ignored (a background job of a script, some CI runners)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    playground = None
    try:
        playground = Playground(options, out)
        playground.start()
        playground.watch(lambda: False)
    except (KeyboardInterrupt, _Stop):
        pass
    except ConfigError as exc:
        print(f"playground: {exc}", file=err, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - port in use, Envoy missing, a policy the mesh refuses
        print(f"playground: {type(exc).__name__}: {one_line(exc)}", file=err, flush=True)
        return 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        if playground is not None:
            playground.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("playground stopped", file=out, flush=True)
    return 0
