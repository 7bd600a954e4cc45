"""Repository-wide pytest configuration. The suite's own plugin is loaded by ``suites/conftest.py`` only."""

from __future__ import annotations

from collections import defaultdict

import pytest

from meshjwt.notrun import claim, record

pytest_plugins: list[str] = []
_NOT_RUN = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    """The outermost pytest of a tox env takes the not-run file (xdist workers and nested runs do not)."""
    if not hasattr(config, "workerinput"):
        config.stash[_NOT_RUN] = claim()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Record what was skipped and why, one line per reason, for the end of a tox run (:mod:`meshjwt.notrun`)."""
    target = terminalreporter.config.stash.get(_NOT_RUN, None)
    if not target:
        return
    by_reason: dict[str, set[str]] = defaultdict(set)
    count: dict[str, int] = defaultdict(int)
    for report in terminalreporter.stats.get("skipped", []):
        if not isinstance(report.longrepr, tuple):
            continue
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        by_reason[reason].add(report.nodeid.split("::")[0] or str(report.longrepr[0]))
        count[reason] += 1
    record(
        (f"{count[r]} skipped ({', '.join(sorted(by_reason[r])[:3])}{' …' if len(by_reason[r]) > 3 else ''}): {r}"
        for r in sorted(by_reason)),
        target,
    )
