"""Where Istio's golden test data lives (never copied into this repository)."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ENV_VAR = "MESHJWT_ISTIO_GOLDEN"
REPO_ROOT = Path(__file__).resolve().parents[2]


class GoldenMissing(RuntimeError):
    """Istio's golden files are not where we look; the message is one line naming what to fix."""


def golden_root(env: Mapping[str, str] | None = None) -> Path:
    """Where Istio's golden data is looked for: ``$MESHJWT_ISTIO_GOLDEN``, else ``<repo>/../shared/istio-golden``
    (the one place that says so, for the rehearsal and the golden tests alike)."""
    configured = (os.environ if env is None else env).get(ENV_VAR)
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "istio-golden"


def golden_dir() -> Path:
    """:func:`golden_root`; GoldenMissing if it is not a folder."""
    configured = os.environ.get(ENV_VAR)
    path = golden_root()
    if not path.is_dir():
        how = f"${ENV_VAR}={configured}" if configured else f"{path} (set ${ENV_VAR} to another folder)"
        raise GoldenMissing(f"Istio golden files not found: {how}")
    return path


def golden_file(relative: str) -> Path:
    """One file of the golden folder, e.g. ``install/pilot_default.golden.yaml``; GoldenMissing if absent."""
    path = golden_dir() / relative
    if not path.is_file():
        raise GoldenMissing(f"Istio golden file missing: {path}")
    return path


@lru_cache(maxsize=16)
def _text(path: str, mtime: float) -> str:
    return Path(path).read_text()


@lru_cache(maxsize=16)
def _docs(path: str, mtime: float) -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(_text(path, mtime)) if doc)


def read_text(relative: str) -> str:
    """The text of a golden file (cached per path and modification time)."""
    path = golden_file(relative)
    return _text(str(path), path.stat().st_mtime)


def load_all(relative: str) -> list[dict[str, Any]]:
    """Every YAML document of a golden file, empty documents dropped (fresh copies: callers may mutate them)."""
    path = golden_file(relative)
    return copy.deepcopy(list(_docs(str(path), path.stat().st_mtime)))
