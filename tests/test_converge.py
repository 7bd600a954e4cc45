"""Convergence: N consecutive agreements within a named timeout; any mismatch resets the count."""

from meshjwt.converge import converge
from meshjwt.mesh import Response
from meshjwt.settings import Timeouts

FAST = Timeouts(converge=0.5, poll_interval=0.001, consecutive=3)


def sequence(*statuses: int):
    answers = list(statuses)

    def send() -> Response:
        return Response(answers.pop(0) if len(answers) > 1 else answers[0])

    return send


def expect(status: int):
    return lambda r: None if r.status == status else f"status {r.status} != expected {status}"


def test_passes_after_stale_answers_once_three_agree():
    outcome = converge(sequence(200, 200, 403, 403, 403), expect(403), FAST)
    assert outcome.passed and outcome.attempts == 5 and outcome.history == ["status 200 != expected 403"]


class FakeClock:
    """Time that moves only when the code under test sleeps: convergence without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_flapping_answer_resets_the_count_and_fails_at_the_timeout():
    flips = iter([403, 403, 200] * 10_000)
    clock = FakeClock()
    timeouts = Timeouts(converge=0.5, poll_interval=0.01, consecutive=3)
    outcome = converge(lambda: Response(next(flips)), expect(403), timeouts, clock=clock, sleep=clock.sleep)
    assert not outcome.passed
    assert outcome.last.status == 200 and outcome.attempts >= 100  # a round every 0.01 s for 0.5 s, never passing
    assert 0.5 <= outcome.seconds < 0.52
    assert "status 200 != expected 403" in outcome.problem


def test_connection_failures_are_reported_not_counted_as_status():
    outcome = converge(lambda: Response(0, error="connection refused"), expect(200),
                       Timeouts(converge=0.05, poll_interval=0.01))  # fmt: skip
    assert not outcome.passed and outcome.last.summary() == "no response (connection refused)"


def test_each_target_owns_its_timeout_defaults_and_the_user_wins():
    from meshjwt.targets.kind import KindMesh
    from meshjwt.targets.local import LocalMesh

    local = Timeouts.of(LocalMesh.default_timeouts, {"converge": 12, "consecutive": None})
    assert local.converge == 12.0 and local.consecutive == 3 and local.poll_interval < 0.01
    assert Timeouts.of(KindMesh.default_timeouts).converge == 30.0


def test_a_wrong_answer_on_confirmed_config_fails_at_once_and_shows_the_answers():
    outcome = converge(sequence(200, 403, 403, 403), expect(403), FAST, settled=True)
    assert not outcome.passed and outcome.attempts == 3  # the first round's three answers, no second round
    assert outcome.decisive is not None and outcome.decisive.status == 200
    assert "confirmed the applied config" in outcome.problem
    assert outcome.answers[0].startswith("#1: 200")


def test_a_forged_token_accepted_once_is_never_forgiven_even_unconfirmed():
    # a proxy that answers every 4th request carrying a token with 200: the streak rule alone would pass it
    answers = iter([200, 401, 401, 401] * 100)
    outcome = converge(lambda: Response(next(answers)), expect(401), FAST, must_refuse=True)
    assert not outcome.passed and outcome.accepted is not None and outcome.accepted.status == 200
    assert "a 2xx to a token that must be refused is final" in outcome.problem


def test_unconfirmed_config_still_converges_past_stale_refusals():
    outcome = converge(sequence(401, 401, 200, 200, 200), expect(200), FAST, must_refuse=False)
    assert outcome.passed and outcome.attempts == 5 and outcome.decisive is None


def test_confirmed_config_still_needs_n_consecutive_matches():
    outcome = converge(sequence(403), expect(403), FAST, settled=True)
    assert outcome.passed and outcome.attempts == FAST.consecutive


def test_unconfirmed_a_token_that_must_be_refused_waits_until_the_data_path_shows_the_config():
    """A stale gateway answers 200 to everything until the config lands (after 4 requests here); the no-token
    case's 403s show it in force, and only then is the expired token sent: no stale 200 is taken for a forgery."""
    from meshjwt.converge import Probe, converge_many
    from meshjwt.mesh import Request

    sent: list[str] = []

    def send_many(batch):
        out = []
        for request in batch:
            sent.append(request.path)
            landed = len(sent) > 4
            has_token = request.path == "/expired"
            out.append(Response((401 if has_token else 403) if landed else 200))
        return out

    sentinel = Probe(Request(client="ingress", path="/none"), expect(403))
    attack = Probe(Request(client="ingress", path="/expired"), expect(401), must_refuse=True)
    timeouts = Timeouts(converge=1.0, poll_interval=0.001, consecutive=3)
    outcomes = converge_many(send_many, [sentinel, attack], timeouts)
    assert [o.passed for o in outcomes] == [True, True]
    first = sent.index("/expired")  # after 4 stale answers and 3 matching ones of the no-token case
    assert first == 7 and set(sent[:first]) == {"/none"} and outcomes[1].attempts == 3
