"""Issue 17: istiod's JWKS cache as ``pilot/pkg/model/jwks_resolver.go`` runs it (the model in
``meshjwt/localmesh/jwks_resolver.py``), rule by rule, and ``compareJWKSResponse``; each test would fail on the
model before issue 17 (whole-string comparison, retries without a shared deadline, no deletion, no back-off)."""

from __future__ import annotations

import json
import threading
import time

from meshjwt.jwks_compare import compare_jwks_response
from meshjwt.localmesh.jwks_fetch import FetchResult
from meshjwt.localmesh.jwks_resolver import EMPTY_IN_CACHE, JwksResolver

A = {"kid": "a", "kty": "RSA", "n": "x", "e": "AQAB"}
B = {"kid": "b", "kty": "EC", "crv": "P-256", "x": "x", "y": "y"}
KEYS = json.dumps({"keys": [A]})


class Server:
    """Answers in turn (None: the server is down), counting calls and the timeouts it was given."""

    def __init__(self, *answers: str | None) -> None:
        self.answers, self.calls, self.timeouts = list(answers), 0, []

    def __call__(self, uri: str, issuer: str, timeout: float) -> FetchResult:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        self.timeouts.append(timeout)
        return FetchResult(answer, None if answer is not None else "down")


def test_compare_jwks_response_is_sorted_keys_by_kid() -> None:
    assert compare_jwks_response(KEYS, KEYS) == (False, None)
    assert compare_jwks_response(json.dumps({"keys": [A, B]}), json.dumps({"keys": [B, A]})) == (False, None)
    assert compare_jwks_response(KEYS, json.dumps({"keys": [A], "extra": 1})) == (False, None)  # outside keys
    assert compare_jwks_response(KEYS, json.dumps({"keys": [{**A, "n": "y"}]})) == (True, None)
    assert compare_jwks_response("", KEYS) == (True, None)  # the empty entry of a failed fetch: no JSON
    pushed, error = compare_jwks_response(KEYS, "<html/>")
    assert pushed is False and error  # not JSON: no push, the cycle counts as failed
    assert compare_jwks_response(KEYS, '{"other": 1}') == (True, None)  # no keys to compare: push


def test_main_flow_fetches_once_and_stores_an_empty_entry() -> None:
    server = Server(None)
    resolver = JwksResolver(server)  # no refresher: the background request waits
    assert resolver.get("iss", "u", 2.0) == (None, "down")
    assert server.calls == 1 and server.timeouts[0] <= 2.0  # one GET, no retry, the rule's timeout
    assert resolver.get("iss", "u", 2.0) == (None, "down") and server.calls == 1  # cached empty: no fetch
    assert resolver._pending == 1  # sent to the background job


def test_background_job_retries_share_one_deadline_then_delete_the_entry() -> None:
    server = Server(None)
    resolver = JwksResolver(server, retry_interval=0.05)
    resolver.get("iss", "u", 0.12)  # the rule's timeout: the retries' shared deadline
    started = time.monotonic()
    assert resolver.refresh_cache(background=True) is True  # failed
    assert time.monotonic() - started < 0.5 and 2 <= server.calls <= 4  # 7 retries cut short by the deadline
    assert ("iss", "u") not in resolver.entries  # deleted: no refresh fetches it again
    server.answers = [KEYS]
    resolver.refresh()
    assert ("iss", "u") not in resolver.entries and server.calls <= 4
    assert resolver.get("iss", "u", 1.0) == (KEYS, None)  # the next push's main flow fetches it


def test_background_job_heals_within_the_window_and_pushes() -> None:
    pushes: list[int] = []
    server = Server(None, None, KEYS)
    resolver = JwksResolver(server, retry_interval=0.01, on_change=lambda: pushes.append(1))
    resolver.get("iss", "u", 5.0)
    assert resolver.refresh_cache(background=True) is False
    assert pushes == [1] and resolver.get("iss", "u", 5.0) == (KEYS, None)


def test_background_job_fetches_only_entries_without_keys() -> None:
    good, down = Server(KEYS), Server(None)
    resolver = JwksResolver(lambda u, i, t: (good if u == "good" else down)(u, i, t), retry_interval=0.001)
    resolver.get("iss", "good", 1.0)
    resolver.get("iss", "down", 1.0)
    resolver.refresh_cache(background=True)
    assert good.calls == 1  # not refreshed by the background job


def test_failed_periodic_refresh_keeps_keys_and_backs_off() -> None:
    server = Server(KEYS, None)
    resolver = JwksResolver(server, refresh_interval=1200, retry_interval=0.001, failure_interval=60,
                            failure_interval_max=3600)  # fmt: skip
    resolver.get("iss", "u", 1.0)
    intervals = []
    for _ in range(8):
        resolver.refresh()
        intervals.append(resolver.refresh_interval)
    assert intervals == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert resolver.get("iss", "u", 1.0) == (KEYS, None)  # the last keys stay
    server.answers = [KEYS]
    resolver.refresh()
    assert resolver.refresh_interval == 1200  # a good cycle resets it


def test_non_json_refresh_is_cached_without_a_push() -> None:
    pushes: list[int] = []
    server = Server(KEYS, "<html/>")
    resolver = JwksResolver(server, retry_interval=0.001, on_change=lambda: pushes.append(1))
    resolver.get("iss", "u", 1.0)
    resolver.refresh()
    assert pushes == [] and resolver.entries[("iss", "u")].body == "<html/>"  # cached, no push
    assert resolver.last_has_error  # and the cycle counts as failed


def test_change_outside_keys_is_cached_without_a_push() -> None:
    pushes: list[int] = []
    marked = json.dumps({"keys": [A], "marker": 1})
    resolver = JwksResolver(Server(KEYS, marked), on_change=lambda: pushes.append(1))
    resolver.get("iss", "u", 1.0)
    resolver.refresh()
    assert pushes == [] and resolver.get("iss", "u", 1.0) == (marked, None)


def test_eviction_after_seven_days_unused_or_not_refreshed() -> None:
    now = [0.0]
    server = Server(KEYS)
    resolver = JwksResolver(server, retry_interval=0.001, clock=lambda: now[0])
    resolver.get("iss", "u", 1.0)
    now[0] = 6 * 24 * 3600.0
    resolver.refresh()
    assert ("iss", "u") in resolver.entries
    now[0] = 13.5 * 24 * 3600.0  # refreshed at day 6, unused since day 0
    resolver.refresh()
    assert ("iss", "u") not in resolver.entries
    server.answers = [KEYS, None]
    resolver.get("iss", "u", 1.0)  # used at day 13.5
    for day in (14, 18, 20.6):
        now[0] = day * 24 * 3600.0
        resolver.get("iss", "u", 1.0)  # in use, but every refresh fails
        resolver.refresh()
    assert ("iss", "u") not in resolver.entries  # not refreshed successfully for 7 days


def test_an_empty_cached_entry_says_so() -> None:
    resolver = JwksResolver(Server(""))
    assert resolver.get("iss", "u", 1.0) == (None, EMPTY_IN_CACHE)


def test_refresher_runs_the_background_job_and_the_window_can_be_jumped() -> None:
    pushed = threading.Event()
    server = Server(None)
    resolver = JwksResolver(server, retry_interval=10.0, refresh_interval=3600, on_change=pushed.set)
    resolver.start()
    try:
        resolver.get("iss", "u", 60.0)  # a long shared deadline, 10 s between retries
        time.sleep(0.05)
        started = time.monotonic()
        assert resolver.await_retry_window(5)  # the clock jumps past the deadline: the job ends now
        assert time.monotonic() - started < 2 and ("iss", "u") not in resolver.entries and not pushed.is_set()
        # 1.23+ (efbfe15): the background job is refresh(true), it touches neither the ticker nor the interval
        assert resolver.refresh_interval == 3600
    finally:
        resolver.stop()


def test_before_1_23_the_failed_background_job_set_the_failure_interval() -> None:
    from meshjwt.localmesh.istiod import IstiodBehaviour

    assert IstiodBehaviour.for_version("1.22").background_sets_interval
    assert not IstiodBehaviour.for_version("1.23.0").background_sets_interval
    resolver = JwksResolver(Server(None), retry_interval=10.0, refresh_interval=3600, background_sets_interval=True)
    resolver.start()
    try:
        resolver.get("iss", "u", 60.0)
        time.sleep(0.05)
        assert resolver.await_retry_window(5)
        deadline = time.monotonic() + 2
        while resolver.refresh_interval != resolver.failure_interval and time.monotonic() < deadline:
            time.sleep(0.01)
        assert resolver.refresh_interval == resolver.failure_interval  # refreshCache after the failed job
    finally:
        resolver.stop()
