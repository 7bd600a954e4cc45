"""istiod's JWKS resolver (``pilot/pkg/model/jwks_resolver.go``), modelled: a cache keyed by (issuer, jwksUri)
that outlives pushes, refreshed every ``refresh_interval``, a failed first fetch retried in the background on
istiod's schedule, and a push by itself when a background fetch changed what it inlines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meshjwt.localmesh.jwks_fetch import FetchResult

#: istiod's defaults: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, and the retries after a failed first fetch
#: (7 × 1 s, then 1 min doubling up to 60 min)
ISTIOD_REFRESH_INTERVAL = 20 * 60.0
ISTIOD_RETRY_DELAYS: tuple[float, ...] = (1.0,) * 7 + (60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0)

Fetcher = Callable[[str, str, float], FetchResult]  # (jwksUri, issuer, timeout) → the body or why not


def is_jwks(text: str) -> bool:
    """Whether ``text`` is a JSON object with a ``keys`` list (what Envoy's jwt_authn accepts)."""
    try:
        return isinstance(json.loads(text).get("keys"), list)
    except (ValueError, AttributeError):
        return False


@dataclass
class Entry:
    """One cached (issuer, jwksUri): the body istiod inlines (None: never fetched), and the last error."""

    body: str | None
    error: str | None = None
    timeout: float = 5.0
    retries_left: int = 0


class JwksResolver:
    """The cache and its background jobs. ``fetch`` does one GET (the world's DNS, istiod's namespace);
    ``accept_non_jwks`` is released istiod's "any 2xx body is inlined"; ``on_change`` is the push."""

    def __init__(self, fetch: Fetcher, *, refresh_interval: float = ISTIOD_REFRESH_INTERVAL,
                 retry_delays: Sequence[float] = ISTIOD_RETRY_DELAYS, accept_non_jwks: bool = True,
                 on_change: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.fetch = fetch
        self.refresh_interval = refresh_interval
        self.retry_delays = tuple(retry_delays)
        self.accept_non_jwks = accept_non_jwks
        self.on_change = on_change
        self.entries: dict[tuple[str, str], Entry] = {}
        self.refreshes = 0  # completed refresh cycles
        self.started = 0  # started refresh cycles
        self._lock = threading.Lock()
        self._cycle = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()  # the next refresh is due now (a model's clock may jump)
        self._threads: list[threading.Thread] = []

    # --- what a translation asks ------------------------------------------------------------
    def get(self, issuer: str, uri: str, timeout: float) -> tuple[str | None, str | None]:
        """The body istiod inlines for (issuer, uri) and None, or None and why it has none (then istiod
        inlines its substitute key set). A miss fetches now and, on failure, retries in the background."""
        key = (issuer, uri)
        with self._lock:
            entry = self.entries.get(key)
        if entry is not None and entry.body is not None:
            return entry.body, None
        if entry is not None:  # a failed first fetch: the background retries own it
            return None, entry.error
        entry = Entry(None, timeout=timeout)
        self._fetch_into(entry, uri, issuer)
        with self._lock:
            self.entries[key] = entry
        if entry.body is None:
            entry.retries_left = len(self.retry_delays)
            self._spawn(self._retry, key)
        return entry.body, entry.error

    def _fetch_into(self, entry: Entry, uri: str, issuer: str) -> bool:
        """Fetch into ``entry``; True if the inlined body changed. A failure keeps the last body."""
        result = self.fetch(uri, issuer, entry.timeout)
        if result.jwks is not None and not self.accept_non_jwks and not is_jwks(result.jwks):
            result = FetchResult(None, f"{uri} did not return a JWKS")
        if result.jwks is None:
            entry.error = result.error
            return False
        changed, entry.body, entry.error = entry.body != result.jwks, result.jwks, None
        return changed

    # --- background jobs --------------------------------------------------------------------
    def start(self) -> None:
        """Start the refresher (every ``refresh_interval``)."""
        self._spawn(self._refresher)

    def stop(self) -> None:
        """Stop the background jobs (they are daemon threads; this returns at once)."""
        self._stop.set()
        self._wake.set()
        with self._cycle:
            self._cycle.notify_all()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="istiod-jwks")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _retry(self, key: tuple[str, str]) -> None:
        for delay in self.retry_delays:
            if self._stop.wait(delay):
                return
            with self._lock:
                entry = self.entries.get(key)
            if entry is None or entry.body is not None:
                return
            entry.retries_left -= 1
            if self._fetch_into(entry, key[1], key[0]):
                self._changed()
                return

    def _refresher(self) -> None:
        while True:
            self._wake.wait(self.refresh_interval)
            if self._stop.is_set():
                return
            self.refresh()

    def refresh(self) -> None:
        """One refresh cycle: re-fetch every entry that has keys; push once if any inlined body changed."""
        with self._cycle:
            self._wake.clear()  # this cycle is the one that was due
            self.started += 1
        with self._lock:
            items = [(key, entry) for key, entry in self.entries.items() if entry.body is not None]
        results: list[bool] = []

        def one(issuer: str, uri: str, entry: Entry) -> None:
            results.append(self._fetch_into(entry, uri, issuer))

        # in parallel, as istiod's goroutines: one slow server does not hold up the others' refresh
        workers = [threading.Thread(target=one, args=(issuer, uri, entry), daemon=True)
                   for (issuer, uri), entry in items]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        changed = any(results)
        if changed:
            self._changed()
        with self._cycle:
            self.refreshes += 1
            self._cycle.notify_all()

    def _changed(self) -> None:
        if self.on_change and not self._stop.is_set():
            self.on_change()

    def await_refresh(self, timeout: float, *, now: bool = False) -> bool:
        """Wait until the next refresh cycle (and its push) completed; False if none did within ``timeout``.
        ``now``: the next cycle is due at once (the refresher's clock jumps to it, as a test clock would)."""
        deadline = time.monotonic() + timeout
        with self._cycle:
            target = self.started + 1  # a cycle that starts after this call (one under way may predate it)
            if now:
                self._wake.set()
            while self.refreshes < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._cycle.wait(left)
        return True
