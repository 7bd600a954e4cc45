"""Where Istio's golden test data lives, and how a golden test reacts when it is absent; a structural diff.

The data (``../shared/istio-golden/`` beside the checkout, or ``$MESHJWT_ISTIO_GOLDEN``, the folder that
holds ``authz/`` and ``authn/``) is read in place, never copied. Without it the golden test modules skip
with the reason; in CI (``$CI`` set) one test fails with that line too, since there the checks must run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rehearsal.istio.golden import ENV_VAR as ENV
from rehearsal.istio.golden import golden_root as _root

#: what the golden tests read, under golden_root()
NEEDED = ("authz/http", "authn/policy_applier_test.go")


def golden_root(env: dict[str, str] | None = None) -> Path:
    """The folder of Istio's golden data (:func:`rehearsal.istio.golden.golden_root`)."""
    return _root(env)


def missing(env: dict[str, str] | None = None) -> str | None:
    """One line saying which golden data is absent and how to provide it, or None when all is there."""
    absent = [str(golden_root(env) / sub) for sub in NEEDED if not (golden_root(env) / sub).exists()]
    if not absent:
        return None
    return f"Istio golden data absent: {', '.join(absent)} (put istio-golden beside the checkout or set {ENV})"


def require(sub: str) -> Path:
    """``golden_root()/sub``; at module level, skips the module with the reason when it is absent.

    (In CI the absence fails :func:`tests.test_golden_helpers.test_golden_data_is_there_in_ci` instead, one
    failing test with one line, so the rest of the run still reports.)
    """
    path = golden_root() / sub
    if not path.exists():
        pytest.skip(missing() or f"{path} is absent", allow_module_level=True)
    return path


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
