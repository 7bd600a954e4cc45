"""Is a Docker engine answering? (``docker --version`` works without one; ``docker info`` does not.)"""

from __future__ import annotations

import os
import shutil
import subprocess

from meshjwt.errors import EnvironmentProblem
from meshjwt.launcher import command


def docker_engine_problem(timeout: float = 3.0, docker: str = "docker") -> str | None:
    """None if a Docker engine answers within ``timeout`` seconds, else why not (one line)."""
    exe = shutil.which(docker)
    if exe is None:
        return "the docker CLI is not installed"
    try:
        result = subprocess.run(
            [exe, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "DOCKER_CLI_HINTS": "false"},
        )
    except subprocess.TimeoutExpired:
        return f"the Docker engine did not answer `docker info` within {timeout:g}s"
    version = result.stdout.strip()
    if result.returncode != 0 or not version or "<no value>" in version:
        detail = " ".join(result.stderr.split())[:160] or f"exit {result.returncode}"
        return f"no Docker engine is reachable ({detail})"
    return None


def require_docker(timeout: float = 3.0) -> None:
    """Raise EnvironmentProblem with one line if kind cannot run here."""
    problem = docker_engine_problem(timeout)
    if problem:
        raise EnvironmentProblem(f"--target kind needs a running Docker engine: {problem}; "
                                 f"run the local reference mesh instead with `{command('local')}`")
