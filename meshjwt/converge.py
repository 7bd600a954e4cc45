"""Polling until N consecutive responses agree, within a named timeout (never a fixed sleep).

Cases are converged in batches: each round sends, for every case still pending, as many requests as
it still needs for N agreements in a row (``Mesh.request_many``, one ``kubectl exec`` on a cluster).

Verdict integrity: every answer is evidence, and a wrong answer is final when it cannot be stale.
- A case whose target **confirmed** that the proxy runs the applied config (``Probe.settled``: local,
  Envoy acknowledged it; kind/cluster, the config_dump probe showed it) fails at its first wrong answer.
- A case the target cannot confirm keeps the convergence rule (a mismatch resets its count), with one
  exception: a 2xx to a token the case expects to be refused (``Probe.must_refuse``) fails it at once,
  whatever comes after: a mesh that lets a forged token through once is never forgiven. So that a stale
  proxy (one still without the applied config) is not taken for one that accepts forged tokens, the data
  path confirms the config first: such a token is sent only once the batch's other unconfirmed cases of
  the same client (no token, or one that must pass) have converged.
- Either way N consecutive matching answers (``timeouts.consecutive``) are the minimum sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tenacity import RetryError, Retrying, retry_if_exception_type, wait_fixed

from meshjwt.mesh import Request, Response
from meshjwt.settings import Timeouts

Mismatch = Callable[[Response], "str | None"]
#: how many answers an outcome keeps verbatim (the first ones and the wrong ones); the rest are counted
ANSWERS_KEPT = 12


class NotYet(Exception):
    """A round ended with cases that do not yet have N agreeing answers in a row."""


@dataclass(frozen=True)
class Probe:
    """One case to converge: its request, its check, and how much a wrong answer weighs."""

    request: Request
    mismatch: Mismatch
    #: the target confirmed the proxy runs the applied config: a wrong answer cannot be stale, it is final
    settled: bool = False
    #: the request carries a token the case expects to be refused: a 2xx to it is final, settled or not
    must_refuse: bool = False


@dataclass
class Outcome:
    """How convergence went: the verdict, attempts made, the last response and problem, the time taken.

    ``decisive`` is the answer that failed the case at once (a wrong answer on confirmed config, or a 2xx
    to a token that must be refused), ``answers`` what came back (the first and every wrong one, shown)."""

    passed: bool
    attempts: int
    last: Response
    problem: str | None
    seconds: float
    history: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    decisive: Response | None = None
    must_refuse: bool = False

    @property
    def accepted(self) -> Response | None:
        """The 2xx a token that must be refused got (None if it got none)."""
        decisive = self.decisive
        return decisive if self.must_refuse and decisive is not None and 200 <= decisive.status < 300 else None


@dataclass
class _Tracker:
    """One case's progress: its streak of agreements, attempts, last answer, mismatches and final answer."""

    probe: Probe
    streak: int = 0
    attempts: int = 0
    last: Response | None = None
    problem: str | None = None
    history: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    decisive: Response | None = None

    @property
    def request(self) -> Request:
        return self.probe.request

    def pending(self, need: int) -> bool:
        return self.decisive is None and self.streak < need

    def waits_for(self, other: _Tracker) -> bool:
        """Whether this case's token may be sent only after ``other`` converged (see the module's docstring)."""
        mine, theirs = self.probe, other.probe
        return (not mine.settled and mine.must_refuse and not theirs.settled and not theirs.must_refuse
                and mine.request.client == theirs.request.client)  # fmt: skip

    def record(self, response: Response) -> None:
        self.attempts += 1
        problem = self.probe.mismatch(response)
        if (problem is not None or len(self.answers) < 3) and len(self.answers) < ANSWERS_KEPT:
            self.answers.append(f"#{self.attempts}: {response.summary(80)}")
        if self.decisive is not None:  # decided: later answers are shown, never change the verdict
            return
        self.last, self.problem = response, problem
        if problem is None:
            self.streak += 1
            return
        self.streak = 0
        if not self.history or self.history[-1] != problem:
            self.history.append(problem)
        accepted = self.probe.must_refuse and 200 <= response.status < 300
        if self.probe.settled or accepted:
            self.decisive = response
            why = ("a 2xx to a token that must be refused is final" if accepted
                   else "the proxy had confirmed the applied config, so the answer cannot be stale")  # fmt: skip
            self.problem = f"{problem} at attempt {self.attempts} ({why})"


def converge_many(
    send_many: Callable[[Sequence[Request]], Sequence[Response]],
    cases: Sequence[Probe],
    timeouts: Timeouts,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Converge every case; one ``send_many`` call per round for all pending cases.

    A case passes once ``timeouts.consecutive`` answers in a row have no mismatch; it fails at once on a
    decisive answer (see the module's docstring); the batch stops at ``timeouts.converge`` seconds (the
    named timeout 'converge') with the cases still pending failed."""
    trackers = [_Tracker(probe) for probe in cases]
    need = timeouts.consecutive
    started = clock()

    def one_round() -> None:
        pending = [t for t in trackers if t.pending(need)
                   and not any(t.waits_for(o) and o.pending(need) for o in trackers)]  # fmt: skip
        batch = [(t, t.request) for t in pending for _ in range(need - t.streak)]
        responses = send_many([request for _, request in batch])
        for (tracker, _), response in zip(batch, responses, strict=True):
            tracker.record(response)
        if any(t.pending(need) for t in trackers):
            raise NotYet(f"{sum(t.pending(need) for t in trackers)} case(s) pending")

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
    return [_outcome(t, need, seconds) for t in trackers]


def _outcome(t: _Tracker, need: int, seconds: float) -> Outcome:
    passed = t.decisive is None and t.streak >= need
    unsent = "not sent: the other cases never showed the applied config in force" if not t.attempts else None
    problem = None if passed else (t.problem or unsent or f"{t.streak}/{need} agreements")
    return Outcome(passed, t.attempts, t.last or Response(0, error="no attempt"), problem, seconds, t.history,
                   t.answers, t.decisive, t.probe.must_refuse)  # fmt: skip


def converge(
    send: Callable[[], Response],
    mismatch: Mismatch,
    timeouts: Timeouts,
    *,
    settled: bool = False,
    must_refuse: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """One case: send until ``timeouts.consecutive`` answers in a row match, a decisive answer, or the timeout."""
    probe = Probe(Request(), mismatch, settled=settled, must_refuse=must_refuse)
    (outcome,) = converge_many(lambda batch: [send() for _ in batch], [probe], timeouts, clock=clock, sleep=sleep)
    return outcome
