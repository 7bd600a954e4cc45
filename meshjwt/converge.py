"""Polling until N consecutive responses agree, within a named timeout (never a fixed sleep).

Cases are converged in batches: each round sends, for every case still pending, as many requests as
it still needs for N agreements in a row (``Mesh.request_many``, one ``kubectl exec`` on a cluster),
and the N-consecutive rule is kept per case: any mismatch resets that case's count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tenacity import RetryError, Retrying, retry_if_exception_type, wait_fixed

from meshjwt.mesh import Request, Response
from meshjwt.settings import Timeouts

Mismatch = Callable[[Response], "str | None"]


class NotYet(Exception):
    """A round ended with cases that do not yet have N agreeing answers in a row."""


@dataclass
class Outcome:
    """How convergence went: the verdict, attempts made, the last response and problem, the time taken."""

    passed: bool
    attempts: int
    last: Response
    problem: str | None
    seconds: float
    history: list[str] = field(default_factory=list)


@dataclass
class _Tracker:
    """One case's progress: its streak of agreements, attempts, last answer and distinct mismatches."""

    request: Request
    mismatch: Mismatch
    streak: int = 0
    attempts: int = 0
    last: Response | None = None
    problem: str | None = None
    history: list[str] = field(default_factory=list)

    def record(self, response: Response) -> None:
        self.attempts += 1
        self.last = response
        self.problem = self.mismatch(response)
        if self.problem is None:
            self.streak += 1
            return
        self.streak = 0
        if not self.history or self.history[-1] != self.problem:
            self.history.append(self.problem)


def converge_many(
    send_many: Callable[[Sequence[Request]], Sequence[Response]],
    cases: Sequence[tuple[Request, Mismatch]],
    timeouts: Timeouts,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Converge every (request, mismatch) pair; one ``send_many`` call per round for all pending cases.

    A case passes once ``timeouts.consecutive`` answers in a row have no mismatch (the whole check is
    inside the retry loop, so a stale answer resets the count); the batch stops at
    ``timeouts.converge`` seconds (the named timeout 'converge') with the rest failed."""
    trackers = [_Tracker(request, mismatch) for request, mismatch in cases]
    need = timeouts.consecutive
    started = clock()

    def one_round() -> None:
        pending = [t for t in trackers if t.streak < need]
        batch = [(t, t.request) for t in pending for _ in range(need - t.streak)]
        responses = send_many([request for _, request in batch])
        for (tracker, _), response in zip(batch, responses, strict=True):
            tracker.record(response)
        if any(t.streak < need for t in trackers):
            raise NotYet(f"{sum(t.streak < need for t in trackers)} case(s) pending")

    def out_of_time(_state: object) -> bool:
        return clock() - started >= timeouts.converge

    try:
        for attempt in Retrying(stop=out_of_time, wait=wait_fixed(timeouts.poll_interval), sleep=sleep,
                                retry=retry_if_exception_type(NotYet), reraise=False):  # fmt: skip
            with attempt:
                one_round()
    except RetryError:
        pass
    seconds = clock() - started
    return [
        Outcome(t.streak >= need, t.attempts, t.last or Response(0, error="no attempt"),
                None if t.streak >= need else (t.problem or f"{t.streak}/{need} agreements"), seconds, t.history)
        for t in trackers
    ]  # fmt: skip


def converge(
    send: Callable[[], Response],
    mismatch: Mismatch,
    timeouts: Timeouts,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """One case: send until ``timeouts.consecutive`` answers in a row match, or ``timeouts.converge`` ends."""
    request = Request()
    (outcome,) = converge_many(lambda batch: [send() for _ in batch], [(request, mismatch)], timeouts,
                               clock=clock, sleep=sleep)  # fmt: skip
    return outcome
