"""Where Istio's golden test data lives, and how a golden test reacts when it is absent; a structural diff.

The data (``$MESHJWT_ISTIO_GOLDEN``, else ``../shared/istio-golden/`` beside the checkout, else a cache filled
from Istio's repository at the pinned commit: :mod:`rehearsal.istio.golden`) is read in place, never copied
into the repository. When none of them can provide it, the golden tests skip with the reason; under ``CI=true``
they fail with it instead, since there the checks must run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import pytest

from meshjwt.notrun import in_ci
from rehearsal.istio.golden import ENV_VAR as ENV
from rehearsal.istio.golden import GoldenMissing, golden_dir
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


def unavailable(reason: str, module: bool = False) -> NoReturn:
    """A golden check that cannot run: a skip with ``reason``, or under ``CI=true`` a failure (never a skip)."""
    if in_ci():
        pytest.fail(f"{reason}; CI must run the golden checks", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def need(sub: str, module: bool = False) -> Path:
    """``golden_root()/sub`` (downloaded into the cache if that is where it is looked for), else :func:`unavailable`."""
    try:
        return golden_dir(sub)
    except GoldenMissing as exc:
        unavailable(str(exc), module)


def require(sub: str) -> Path:
    """:func:`need` at module level: the module skips (fails under CI) when the data is unavailable."""
    return need(sub, module=True)


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
