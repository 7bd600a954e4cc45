"""Real web servers (Debian's nginx and apache2) as probe upstreams: a public page and a secret, on loopback.

Each backend gets its own directory (config, document root, logs), listens on a kernel-chosen
127.0.0.1 port, runs in the foreground as a child that dies with the run (``localmesh.processes``),
and serves ``/public/index.html`` and ``/private/secret.html`` (which holds the run's secret marker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshjwt.errors import EnvironmentProblem
from meshjwt.localmesh import processes
from meshjwt.localmesh.ports import free_port, is_listening

PUBLIC_PATH = "/public/index.html"
PRIVATE_PATH = "/private/secret.html"
BACKENDS = ("nginx", "apache2")
#: where Debian puts the binaries (sbin is often not on a user's PATH)
_SEARCH = {"nginx": ("nginx", "/usr/sbin/nginx"), "apache2": ("apache2", "/usr/sbin/apache2")}
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def find_binary(name: str) -> str | None:
    """The backend's binary, or None when it is not installed."""
    for candidate in _SEARCH[name]:
        found = shutil.which(candidate) if "/" not in candidate else (candidate if os.access(candidate, os.X_OK)
                                                                       else None)  # fmt: skip
        if found:
            return found
    return None


def missing_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (one line), or None when it can."""
    if find_binary(name) is None:
        return f"{name} is not installed (Debian: apt-get install {name}); the probe needs the real server"
    if name == "apache2" and not (APACHE_MODULES / "mod_mpm_event.so").is_file():
        return f"apache2 modules not found in {APACHE_MODULES}"
    return None


def nginx_config(root: Path, www: Path, port: int) -> str:
    """nginx in the foreground, one process (no user switch), only 127.0.0.1:port, stock URI handling."""
    temp = "".join(f"  {kind}_temp_path {root / 'tmp' / kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                                "uwsgi", "scgi"))  # fmt: skip
    return (
        f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {root / 'nginx.pid'};\n"
        f"error_log {root / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  access_log off;\n  default_type text/html;\n{temp}"
        f"  server {{\n    listen 127.0.0.1:{port};\n    server_name _;\n    root {www};\n  }}\n}}\n"
    )


def apache_config(root: Path, www: Path, port: int) -> str:
    """apache2 (event MPM) with Debian's modules, only 127.0.0.1:port, stock URI handling."""
    modules = {"mpm_event": "mod_mpm_event.so", "authz_core": "mod_authz_core.so", "dir": "mod_dir.so",
               "mime": "mod_mime.so", "unixd": "mod_unixd.so"}  # fmt: skip
    loads = "".join(
        f"LoadModule {name}_module {APACHE_MODULES / file}\n"
        for name, file in modules.items()
        if (APACHE_MODULES / file).is_file()
    )
    return (
        f'ServerRoot "{root}"\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\n{loads}'
        f"PidFile {root / 'apache2.pid'}\nErrorLog {root / 'error.log'}\nLogLevel warn\nMutex file:{root}\n"
        "User nobody\nGroup nogroup\nStartServers 1\nServerLimit 1\nThreadsPerChild 16\nMaxRequestWorkers 16\n"
        f'DocumentRoot "{www}"\n<Directory "{www}">\n  Require all granted\n</Directory>\n'
        "TypesConfig /dev/null\nAddType text/html .html\n"
    )


@dataclass
class WebBackend:
    """One real web server serving the public page and the secret on a loopback port."""

    name: str  # "nginx" | "apache2"
    secret: str
    keep: bool = False  # keep the directory after stop (--keep-workdir)
    port: int = 0
    process: subprocess.Popen | None = None
    directory: Path = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        # its own directory, world-readable (apache's children run as nobody); it holds no key, only the
        # public page and the run's marker
        self.directory = Path(tempfile.mkdtemp(prefix=f"meshjwt-{self.name}-"))
        self.log = self.directory / "error.log"

    def start(self, timeout: float) -> WebBackend:
        """Write config and content, start the server, wait until it answers on its port (timeout 'start')."""
        binary = find_binary(self.name)
        reason = missing_reason(self.name)
        if reason or binary is None:
            self.stop()
            raise EnvironmentProblem(reason or f"{self.name} is not installed")
        www = self.directory / "www"
        (www / "public").mkdir(parents=True, exist_ok=True)
        (www / "private").mkdir(parents=True, exist_ok=True)
        (www / PUBLIC_PATH.lstrip("/")).write_text("<html><body>public page</body></html>\n")
        (www / PRIVATE_PATH.lstrip("/")).write_text(f"<html><body>{self.secret}</body></html>\n")
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.directory / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        for path in [self.directory, *self.directory.rglob("*")]:  # apache's children run as nobody
            path.chmod(0o755 if path.is_dir() else 0o644)
        self.port = free_port()
        config = self.directory / f"{self.name}.conf"
        if self.name == "nginx":
            config.write_text(nginx_config(self.directory, www, self.port))
            argv = [binary, "-p", str(self.directory), "-c", str(config), "-e", str(self.log)]
        else:
            config.write_text(apache_config(self.directory, www, self.port))
            argv = [binary, "-f", str(config), "-DFOREGROUND"]
        supervised = [sys.executable, "-m", "meshjwt.security.supervise", str(os.getpid()),
                      str(self.directory), "--", *argv]  # fmt: skip
        self.process = processes.spawn(supervised, log=self.directory / "stderr.log")
        deadline = time.monotonic() + timeout
        while not is_listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = self._last_words()
                self.stop()
                raise EnvironmentProblem(f"{self.name} did not start on 127.0.0.1:{self.port} within {timeout:g}s "
                                         f"(timeout 'start'): {why}")  # fmt: skip
            time.sleep(0.02)
        return self

    def _last_words(self) -> str:
        for log in (self.directory / "stderr.log", self.log):
            if log.is_file():
                lines = log.read_text(errors="replace").strip().splitlines()
                if lines:
                    return lines[-1]
        return "no output"

    def stop(self) -> None:
        """Stop the server and its children (process group), remove its directory. Safe to call twice."""
        if self.process is not None:
            processes.terminate(self.process)
            self.process = None
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
