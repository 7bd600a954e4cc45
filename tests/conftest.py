"""Shared by the suite's own tests.

pytester runs the suites in process and afterwards drops every module the run imported; cryptography's Rust
bindings do not survive being imported twice ("curve must be an EllipticCurve instance"), so the suite's
machinery is imported once, here, before any in-process run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

import meshjwt.keys  # noqa: F401
import meshjwt.pytest_plugin.mesh  # noqa: F401
import meshjwt.targets.local  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Keep the unit run in process: a test not marked `integration` that starts a process fails, naming it."""
    if item.get_closest_marker("integration"):
        yield
        return
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        raise RuntimeError(f"{item.nodeid} starts a process ({str(args)[:80]}): mark it @pytest.mark.integration")

    subprocess.Popen._execute_child = refuse  # type: ignore[attr-defined]
    try:
        yield
    finally:
        subprocess.Popen._execute_child = original  # type: ignore[attr-defined]
