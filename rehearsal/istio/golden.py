"""Where Istio's golden test data lives (never copied into this repository), and how a clone without it gets it.

Looked for in this order: ``$MESHJWT_ISTIO_GOLDEN``; ``<repo>/../shared/istio-golden`` (where the project is
developed and in its CI); a cache filled from Istio's repository at the pinned commit, one download per file,
each checked against its sha256 in ``golden-pins.json`` (beside this module).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from meshjwt.kube.binaries import ChecksumMismatch, FetchFailed, fetch_pinned, write_atomically

ENV_VAR = "MESHJWT_ISTIO_GOLDEN"
#: the cache folder (default ``~/.cache/meshjwt/istio-golden/<commit>``)
CACHE_ENV = "MESHJWT_ISTIO_GOLDEN_CACHE"
#: where the files are downloaded from: ``<base>/<commit>/<path in Istio's repository>``
URL_ENV = "MESHJWT_ISTIO_GOLDEN_URL"
DEFAULT_URL = "https://raw.githubusercontent.com/istio/istio"
REPO_ROOT = Path(__file__).resolve().parents[2]
PINS_FILE = Path(__file__).with_name("golden-pins.json")
DOWNLOAD_TIMEOUT = 20.0


class GoldenMissing(RuntimeError):
    """Istio's golden files are not where we look; the message is one line naming what to fix."""


@lru_cache(maxsize=1)
def pins() -> dict[str, Any]:
    """The pinned commit and, per file (path under the golden folder), its path in Istio's repository and sha256."""
    return json.loads(PINS_FILE.read_text())


def sibling() -> Path:
    """``<repo>/../shared/istio-golden``."""
    return REPO_ROOT.parent / "shared" / "istio-golden"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The download cache of the pinned commit."""
    env = os.environ if env is None else env
    configured = env.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "meshjwt" / "istio-golden" / pins()["commit"]


def golden_root(env: Mapping[str, str] | None = None) -> Path:
    """Where Istio's golden data is looked for (the one place that says so, for the rehearsal and the tests)."""
    configured = (os.environ if env is None else env).get(ENV_VAR)
    if configured:
        return Path(configured)
    return sibling() if sibling().is_dir() else cache_dir(env)


def _is_cache(root: Path) -> bool:
    return not os.environ.get(ENV_VAR) and root != sibling()


#: the first download failure of this process: later files are not tried again (offline: one attempt)
_failed: list[str] = []


def download(relative: str, target: Path, base_url: str | None = None) -> Path:
    """Download one pinned file to ``target``, checked against its sha256; GoldenMissing (one line) if it fails."""
    pin = pins()["files"].get(relative)
    if pin is None:
        raise GoldenMissing(f"Istio golden file {relative} is not in {PINS_FILE.name}: pin it to download it")
    base = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    url = f"{base}/{pins()['commit']}/{pin['source']}"
    try:
        write_atomically(target, fetch_pinned(url, pin["sha256"], DOWNLOAD_TIMEOUT))
    except FetchFailed as exc:
        if exc.http is not None:
            raise GoldenMissing(f"downloading Istio golden file {url} failed: {exc.reason}") from None
        raise GoldenMissing(f"cannot download Istio golden data from {exc.host} (no network?): {exc.reason}") from None
    except ChecksumMismatch as exc:
        raise GoldenMissing(f"Istio golden file {url} has sha256 {exc.actual}, pinned {exc.pinned}: not used") from None
    return target


def _how_to_provide() -> str:
    return f"put istio-golden at {sibling()} or set ${ENV_VAR}"


def _fill(root: Path, relatives: list[str]) -> None:
    """Download the pinned files under ``root`` that are not there yet (stop at the first failure)."""
    for relative in relatives:
        if (root / relative).is_file():
            continue
        if _failed:
            raise GoldenMissing(_failed[0])
        try:
            download(relative, root / relative)
        except GoldenMissing as exc:
            _failed.append(f"{exc} ({_how_to_provide()})")
            raise GoldenMissing(_failed[0]) from None


def golden_dir(sub: str = "") -> Path:
    """:func:`golden_root` (``/sub`` when given), filled from Istio's repository when it is the cache;
    GoldenMissing (one line) if it is not there and cannot be downloaded."""
    root = golden_root()
    wanted = sorted(r for r in pins()["files"] if not sub or r == sub or r.startswith(sub.rstrip("/") + "/"))
    if _is_cache(root):
        _fill(root, wanted)
    path = root / sub if sub else root
    if not path.exists():
        configured = os.environ.get(ENV_VAR)
        how = f"${ENV_VAR}={configured}" if configured else f"{path} ({_how_to_provide()})"
        raise GoldenMissing(f"Istio golden files not found: {how}")
    return path


def golden_file(relative: str) -> Path:
    """One file of the golden folder, e.g. ``install/pilot_default.golden.yaml``; GoldenMissing if absent."""
    path = golden_dir(relative)
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
