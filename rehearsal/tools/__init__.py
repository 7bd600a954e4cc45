"""Stand-ins for the command-line tools the kind/cluster targets run (rehearsal only)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_module_wrapper(path: Path, module: str, args: Sequence[str] = (), python: str = sys.executable) -> Path:
    """An executable at ``path`` running ``python -m module ARGS "$@"`` from this checkout (for ``--kind-path``,
    ``--istioctl-path`` or PATH)."""
    baked = "".join(f" {shlex.quote(a)}" for a in args)
    path.write_text(
        "#!/bin/sh\n"
        f"# {module}: a stand-in for the rehearsal, not the real tool\n"
        f"PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}} exec {shlex.quote(python)} "
        f'-m {module}{baked} "$@"\n'
    )
    path.chmod(0o755)
    return path
