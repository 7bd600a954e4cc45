"""tox plugin of this project: each env records what it could not run (``$MESHJWT_NOT_RUN``, see
``meshjwt/notrun.py``), and the run ends with those lines, one per thing not run and why, after tox's summary."""

from __future__ import annotations

import atexit
import importlib.util
from pathlib import Path

from tox.plugin import impl
from tox.tox_env.api import ToxEnv

#: the not-run files of the envs this tox invocation ran, in order
_RAN: dict[str, Path] = {}


def _print_not_run() -> None:
    # meshjwt/notrun.py alone (stdlib only): tox's own Python has neither the package nor its dependencies
    spec = importlib.util.spec_from_file_location("meshjwt_notrun", Path(__file__).parent / "meshjwt" / "notrun.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for line in module.summary(_RAN):
        print(line, flush=True)


@impl
def tox_before_run_commands(tox_env: ToxEnv) -> None:
    """Point the env's commands at a fresh file of their own for what they cannot run."""
    path = Path(tox_env.core["work_dir"]) / "not-run" / f"{tox_env.name}.txt"
    path.unlink(missing_ok=True)
    tox_env.conf["set_env"].update({"MESHJWT_NOT_RUN": str(path)})
    if not _RAN:
        atexit.register(_print_not_run)
    _RAN[tox_env.name] = path
