"""Where Istio's golden test data lives, and how a golden test reacts when it is absent; a structural diff.

The data (``../shared/istio-golden/`` beside the checkout, or ``$MESHJWT_ISTIO_GOLDEN``, the folder that
holds ``authz/`` and ``authn/``) is read in place, never copied. Without it a golden test module skips
with the reason, except in CI (``$CI`` set), where it fails with one line: there the checks must run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ENV = "MESHJWT_ISTIO_GOLDEN"
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "istio-golden"


def golden_root() -> Path:
    """The folder of Istio's golden data: ``$MESHJWT_ISTIO_GOLDEN`` if set, else ``../shared/istio-golden``."""
    return Path(os.environ.get(ENV) or DEFAULT)


def require(sub: str, env: dict[str, str] | None = None) -> Path:
    """``golden_root()/sub``; at module level, skip the module if it is missing, or fail it when ``$CI`` is set."""
    env = dict(os.environ) if env is None else env
    path = Path(env.get(ENV) or DEFAULT) / sub
    if path.exists():
        return path
    why = f"Istio golden data {path} is absent (put istio-golden beside the checkout or set {ENV})"
    if env.get("CI"):
        pytest.fail(f"{why}; CI must run the golden checks", pytrace=False)
    pytest.skip(why, allow_module_level=True)
    raise AssertionError("unreachable")  # pragma: no cover


def diff(got: Any, want: Any, path: str = "$") -> list[str]:
    """Differences between parsed documents, one line each, by JSON path."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(got) | set(want), key=str):
            if key not in got:
                out.append(f"{path}.{key}: missing, want {json.dumps(want[key])[:120]}")
            elif key not in want:
                out.append(f"{path}.{key}: unexpected {json.dumps(got[key])[:120]}")
            else:
                out += diff(got[key], want[key], f"{path}.{key}")
        return out
    if isinstance(got, list) and isinstance(want, list):
        out = [] if len(got) == len(want) else [f"{path}: {len(got)} items, want {len(want)}"]
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            out += diff(g, w, f"{path}[{i}]")
        return out
    if type(got) is type(want) and got == want:
        return []
    return [f"{path}: got {json.dumps(got)[:120]}, want {json.dumps(want)[:120]}"]


def assert_same(got: Any, want: Any, what: str) -> None:
    """Fail with every difference (by JSON path) when ``got`` is not ``want``."""
    problems = diff(got, want)
    assert not problems, f"{what} differs from the golden:\n" + "\n".join(problems)
