"""istiod's JWKS resolver (istio/istio ``pilot/pkg/model/jwks_resolver.go`` at 86c9f01), modelled rule by rule;
each rule names the function and the line (``L…``, at 86c9f01) it comes from. Facts:
``../shared/reference/istio-jwt-semantics.md`` §7.

- The cache is keyed by (issuer, jwksUri) and outlives pushes (``jwtKey``, ``keyEntries``).
- Main flow (``GetPublicKey`` L233): one GET, no retry (``networkFetchRetryCountOnMainFlow = 0`` L72, L274),
  timeout the rule's. A failure stores an empty entry (L286; the substitute key set is inlined) and sends the
  key to the background job (``jwksuriChannel <- key`` L294); a cached empty entry is ``errEmptyPubKeyFoundInCache``
  (L228, L253).
- Background job (``refresher`` L455 on ``jwksuriChannel`` → ``refresh(true)`` L469): fetches only entries without
  keys (L506), 7 retries (``networkFetchRetryCountOnRefreshFlow`` L77, L541) 1 s apart (``JwtPubKeyRetryInterval``
  L61) that share one deadline, the rule's timeout (``getRemoteContentWithRetry`` L360: one
  ``context.WithTimeout`` L367 for all attempts). Success pushes (the old "" is no JSON); failure deletes the
  empty entry (L546), and nothing fetches it again until the next push for any reason (its main flow). It
  touches neither the ticker nor the interval ("don't modify the ticker or interval used for the background
  refresh", L467; efbfe15, Istio 1.23.0); before 1.23 it ran through ``refreshCache`` like a periodic cycle
  (``background_sets_interval``).
- Periodic refresh (the ticker, ``PILOT_JWT_PUB_KEY_REFRESH_INTERVAL``; L462): every entry, same retries. A
  failure keeps the last keys (an empty entry is deleted, L546). ``refreshCache`` (L474): a failed cycle sets the
  interval to ``JwtPubKeyRefreshIntervalOnFailure`` (1 min, L57), each further failed cycle doubles it up to
  ``JwtPubKeyRefreshIntervalOnFailureResetThreshold`` (60 min, L64), a good cycle resets it, and the ticker
  restarts (L491).
- Push decision: ``compareJWKSResponse`` (L659, called L574; :mod:`meshjwt.jwks_compare`); the new body is cached
  either way; one push per cycle (``PushFunc`` L596).
- Eviction (``refresh`` L514): an entry unused, or not refreshed successfully, for ``JwtPubKeyEvictionDuration``
  (7 days, L54) is deleted.
- Per version: master's ``validateJWKSFormat`` (L641, main flow L277) treats a 2xx body that is no JWKS as a
  failed fetch; released istiod inlines it (``accept_non_jwks``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshjwt.jwks_compare import compare_jwks_response
from meshjwt.localmesh.jwks_fetch import FetchResult

#: istiod's defaults (``features.PilotJwtPubKeyRefreshInterval``, ``JwtPubKeyRetryInterval``,
#: ``JwtPubKeyRefreshIntervalOnFailure``, ``JwtPubKeyRefreshIntervalOnFailureResetThreshold``,
#: ``JwtPubKeyEvictionDuration``, ``networkFetchRetryCountOnRefreshFlow``)
ISTIOD_REFRESH_INTERVAL = 20 * 60.0
ISTIOD_RETRY_INTERVAL = 1.0
ISTIOD_FAILURE_INTERVAL = 60.0
ISTIOD_FAILURE_INTERVAL_MAX = 60 * 60.0
ISTIOD_EVICTION = 7 * 24 * 3600.0
RETRIES_ON_REFRESH_FLOW = 7
EMPTY_IN_CACHE = "empty public key found in cache"  # errEmptyPubKeyFoundInCache

Fetcher = Callable[[str, str, float], FetchResult]  # (jwksUri, issuer, timeout) → the body or why not


def is_jwks(text: str) -> bool:
    """Whether ``text`` is a JSON object with a ``keys`` list (what Envoy's jwt_authn accepts)."""
    try:
        return isinstance(json.loads(text).get("keys"), list)
    except (ValueError, AttributeError):
        return False


@dataclass
class Entry:
    """One cached (issuer, jwksUri) (``jwtPubKeyEntry``): the body istiod inlines ("" after a failed fetch), the
    rule's timeout, the last use and the last successful refresh (model clock), the last error."""

    body: str
    timeout: float = 5.0
    last_used: float = 0.0
    last_refreshed: float = 0.0
    error: str | None = None


class JwksResolver:
    """The cache and its refresher. ``fetch`` does one GET (the world's DNS, istiod's namespace); ``on_change`` is
    the push; ``clock`` is the model's clock for eviction (fetch deadlines and waits are real time)."""

    def __init__(self, fetch: Fetcher, *, refresh_interval: float = ISTIOD_REFRESH_INTERVAL,
                 retry_interval: float = ISTIOD_RETRY_INTERVAL, failure_interval: float = ISTIOD_FAILURE_INTERVAL,
                 failure_interval_max: float = ISTIOD_FAILURE_INTERVAL_MAX, eviction: float = ISTIOD_EVICTION,
                 accept_non_jwks: bool = True, on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 background_sets_interval: bool = False) -> None:  # fmt: skip
        self.fetch = fetch
        #: before Istio 1.23 (efbfe15) the background job ran through refreshCache: interval and ticker changed
        self.background_sets_interval = background_sets_interval
        self.default_interval = refresh_interval  # refreshDefaultInterval
        self.refresh_interval = refresh_interval  # the ticker's current interval (refreshCache changes it)
        self.retry_interval = retry_interval
        self.failure_interval = failure_interval
        self.failure_interval_max = failure_interval_max
        self.eviction = eviction
        self.accept_non_jwks = accept_non_jwks
        self.on_change = on_change
        self.clock = clock
        self.entries: dict[tuple[str, str], Entry] = {}
        self.refreshes = 0  # completed periodic cycles
        self.started = 0  # started periodic cycles
        self.pushes = 0  # pushes the refresher asked for
        self.last_has_error = False  # refresher's lastHasError
        self._pending = 0  # keys sent on jwksuriChannel, not yet taken by the refresher
        self._background_running = False
        self._due_now = False  # the next periodic cycle is due now (the model's clock jumps to it)
        self._lock = threading.Lock()
        self._cycle = threading.Condition()
        self._stop = threading.Event()
        self._window_over = threading.Event()  # the retries' shared deadline has passed (the clock jumps past it)
        self._threads: list[threading.Thread] = []

    # --- the main flow: what a translation asks -------------------------------------------------
    def get(self, issuer: str, uri: str, timeout: float) -> tuple[str | None, str | None]:
        """The body istiod inlines for (issuer, uri) and None, or None and why it has none (then istiod inlines
        its substitute key set). ``GetPublicKey``: a cached entry is returned (an empty one as an error); a miss
        is fetched once and, on failure, stored empty and sent to the background job."""
        key, now = (issuer, uri), self.clock()
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None:
                entry.last_used = now
        if entry is not None:
            return (entry.body, None) if entry.body else (None, entry.error or EMPTY_IN_CACHE)
        result = self._main_flow_fetch(uri, issuer, timeout)
        entry = Entry(result.jwks or "", timeout, now, now, result.error)
        with self._lock:
            self.entries[key] = entry
        if result.jwks is None:
            self._send_to_background()
        return (entry.body, None) if entry.body else (None, entry.error or EMPTY_IN_CACHE)

    def _main_flow_fetch(self, uri: str, issuer: str, timeout: float) -> FetchResult:
        result = self._fetch_with_retry(uri, issuer, timeout, 0)  # networkFetchRetryCountOnMainFlow
        if result.jwks is not None and not self.accept_non_jwks and not is_jwks(result.jwks):
            return FetchResult(None, f"{uri} did not return a JWKS")  # master: validateJWKSFormat
        return result

    def _fetch_with_retry(self, uri: str, issuer: str, timeout: float, retries: int) -> FetchResult:
        """``getRemoteContentWithRetry``: ``retries`` retries ``retry_interval`` apart after the first GET, all
        under one deadline ``timeout`` from the start."""
        deadline = time.monotonic() + timeout
        result = FetchResult(None, f"GET {uri}: no attempt")
        for attempt in range(retries + 1):
            left = deadline - time.monotonic()
            if left <= 0 or (attempt and self._window_over.is_set()):
                return FetchResult(None, f"GET {uri}: deadline ({timeout:g}s) exceeded after {attempt} attempt(s); "
                                         f"last: {result.error}")  # fmt: skip
            result = self.fetch(uri, issuer, left)
            if result.jwks is not None:
                return result
            if attempt < retries:
                self._window_over.wait(min(self.retry_interval, max(deadline - time.monotonic(), 0)))
                if self._stop.is_set():
                    break
        return result

    # --- the refresher: one goroutine, a ticker and the background channel -----------------------
    def start(self) -> None:
        """Start the refresher."""
        self._spawn(self._refresher)

    def stop(self) -> None:
        """Stop the refresher (a daemon thread; this returns at once)."""
        self._stop.set()
        self._window_over.set()
        with self._cycle:
            self._cycle.notify_all()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="istiod-jwks")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _send_to_background(self) -> None:
        with self._cycle:
            self._pending += 1
            self._cycle.notify_all()

    def _refresher(self) -> None:
        deadline = time.monotonic() + self.refresh_interval  # the ticker
        while True:
            with self._cycle:
                while not (self._stop.is_set() or self._pending or self._due_now):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cycle.wait(left)
                if self._stop.is_set():
                    return
                background = self._pending > 0
                if background:
                    self._pending -= 1
                    self._background_running = True
            if background:
                try:
                    if self.background_sets_interval:  # before 1.23: refreshCache, then the ticker's Reset
                        self.refresh_cache(background=True)
                        deadline = time.monotonic() + self.refresh_interval
                    else:  # refresh(true): "don't modify the ticker or interval used for the background refresh"
                        self._refresh_entries(background=True)
                finally:
                    with self._cycle:
                        self._background_running = False
                        self._cycle.notify_all()
            else:
                self.refresh()
                deadline = time.monotonic() + self.refresh_interval  # refreshCache: refreshTicker.Reset(interval)

    def refresh(self) -> None:
        """One periodic cycle (the ticker's): re-fetch every entry, push once if any keys changed, adjust the
        interval; ``await_refresh`` counts it."""
        with self._cycle:
            self._due_now = False  # this cycle is the one that was due
            self.started += 1
        try:
            self.refresh_cache(background=False)
        finally:
            with self._cycle:
                self.refreshes += 1
                self._cycle.notify_all()

    def refresh_cache(self, *, background: bool) -> bool:
        """``refreshCache``: one cycle, then the ticker's next interval; True if the cycle had errors."""
        has_error = self._refresh_entries(background)
        if has_error:
            self.refresh_interval = (min(self.refresh_interval * 2, self.failure_interval_max)
                                     if self.last_has_error else self.failure_interval)  # fmt: skip
        else:
            self.refresh_interval = self.default_interval
        self.last_has_error = has_error
        return has_error

    def _refresh_entries(self, background: bool) -> bool:
        """``refresh``: evict, re-fetch (in parallel, as goroutines), push once if any keys changed."""
        now = self.clock()
        with self._lock:
            items = list(self.entries.items())
        changed: list[bool] = []
        errors: list[bool] = []
        workers = []
        for key, entry in items:
            if background and entry.body:  # the background job fetches only entries without keys
                continue
            if now - entry.last_used >= self.eviction or now - entry.last_refreshed >= self.eviction:
                self._delete(key, entry)  # unused, or not refreshed successfully, for evictionDuration
                continue

            def one(key: tuple[str, str] = key, entry: Entry = entry) -> None:
                pushed, failed = self._refresh_entry(key, entry, now)
                changed.append(pushed)
                errors.append(failed)

            workers.append(threading.Thread(target=one, daemon=True))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if any(changed):
            self._changed()
        return any(errors)

    def _refresh_entry(self, key: tuple[str, str], entry: Entry, now: float) -> tuple[bool, bool]:
        """One entry's refresh: (push, error). A failure keeps the last keys, or deletes an empty entry; a
        success caches the new body whatever it is and lets ``compareJWKSResponse`` decide the push."""
        old = entry.body
        result = self._fetch_with_retry(key[1], key[0], entry.timeout, RETRIES_ON_REFRESH_FLOW)
        if result.jwks is None:
            entry.error = result.error
            if not old:
                self._delete(key, entry)
            return False, True
        entry.body, entry.last_refreshed, entry.error = result.jwks, now, None
        push, error = compare_jwks_response(old, result.jwks)
        if error:
            entry.error = error
        return push, error is not None

    def _delete(self, key: tuple[str, str], entry: Entry) -> None:
        with self._lock:
            if self.entries.get(key) is entry:
                del self.entries[key]

    def _changed(self) -> None:
        self.pushes += 1
        if self.on_change and not self._stop.is_set():
            self.on_change()

    # --- waits of the suite (the model's clock may jump) ---------------------------------------
    def await_refresh(self, timeout: float, *, now: bool = False) -> bool:
        """Wait until the next periodic cycle (and its push) completed; False if none did within ``timeout``.
        ``now``: the next cycle is due at once (the ticker's clock jumps to it, as a test clock would), and so is
        the deadline of its retries: a fetch that fails is not retried (a failed cycle is over at once)."""
        deadline = time.monotonic() + timeout
        with self._cycle:
            target = self.started + 1  # a cycle that starts after this call (one under way may predate it)
            if now:
                self._due_now = True
                self._window_over.set()
                self._cycle.notify_all()
            try:
                while self.refreshes < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        return False
                    self._cycle.wait(left)
            finally:
                if now and not self._stop.is_set():
                    self._window_over.clear()
        return True

    def await_retry_window(self, timeout: float) -> bool:
        """Let the background job's shared deadline pass (the clock jumps past it: its remaining retries fail at
        once) and wait until no background cycle is pending or running; False if that took over ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cycle:
            self._window_over.set()
            try:
                while self._pending or self._background_running:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        return False
                    self._cycle.wait(left)
            finally:
                if not self._stop.is_set():
                    self._window_over.clear()
        return True
