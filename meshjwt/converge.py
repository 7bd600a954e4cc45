"""Polling until N consecutive responses agree, within a named timeout (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from meshjwt.settings import Timeouts
from meshjwt.targets.base import Response


class NotYet(Exception):
    """One round of the assertion did not get N agreeing answers in a row."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


@dataclass
class Outcome:
    """How convergence went: the verdict, attempts made, the last response and problem, the time taken."""

    passed: bool
    attempts: int
    last: Response
    problem: str | None
    seconds: float
    history: list[str] = field(default_factory=list)


def converge(send: Callable[[], Response], mismatch: Callable[[Response], str | None], timeouts: Timeouts) -> Outcome:
    """Send until ``timeouts.consecutive`` answers in a row have no mismatch (the whole check is inside
    the retry loop, so a stale answer resets the count), or until ``timeouts.converge`` runs out."""
    attempts = 0
    last: list[Response] = []
    history: list[str] = []
    started = time.perf_counter()

    def one_round() -> None:
        nonlocal attempts
        for _ in range(timeouts.consecutive):
            attempts += 1
            response = send()
            last[:] = [response]
            problem = mismatch(response)
            if problem:
                if not history or history[-1] != problem:
                    history.append(problem)
                raise NotYet(problem, response)

    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeouts.converge),
            wait=wait_fixed(timeouts.poll_interval),
            retry=retry_if_exception_type(NotYet),
            reraise=False,
        ):
            with attempt:
                one_round()
        return Outcome(True, attempts, last[0], None, time.perf_counter() - started, history)
    except RetryError as exc:
        error = exc.last_attempt.exception()
        return Outcome(False, attempts, last[0] if last else Response(0, error="no attempt"),
                       str(error), time.perf_counter() - started, history)  # fmt: skip
