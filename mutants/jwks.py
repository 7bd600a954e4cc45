"""Mutants of istiod's JWKS cache (``pilot/pkg/model/jwks_resolver.go``, modelled by
``meshjwt/localmesh/jwks_resolver.py``): its periodic refresh and the push after it, the background retries of a
failed first fetch, a failed refresh's outage behaviour, the substitute key set of a failed fetch, and the
cache of a proxy that fetches itself (``remoteJwks``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshjwt.localmesh.jwks_resolver import Entry, JwksResolver
from meshjwt.localmesh.mutation import Json
from mutants.base import EditFilter, Mutant, each_provider

RESOLVER = "istio/istio pilot/pkg/model/jwks_resolver.go"
SUBSTITUTE = ("istio/istio pilot/pkg/model/jwks_resolver.go (the substitute key set); "
              "releasenotes/notes/jwks-private-key-leak.yaml (FakeJwks leaked, fixed 1.27.8/1.28.5/1.29.1)")
REMOTE = "envoy api/envoy/extensions/filters/http/jwt_authn/v3/config.proto RemoteJwks.cache_duration"


def rebuild(resolver: JwksResolver, kind: type[JwksResolver], **changes: Any) -> JwksResolver:
    """A resolver of class ``kind`` with ``resolver``'s settings, ``changes`` applied."""
    settings = {"refresh_interval": resolver.default_interval, "retry_interval": resolver.retry_interval,
                "failure_interval": resolver.failure_interval, "failure_interval_max": resolver.failure_interval_max,
                "eviction": resolver.eviction, "accept_non_jwks": resolver.accept_non_jwks,
                "on_change": resolver.on_change, "clock": resolver.clock,
                "background_sets_interval": resolver.background_sets_interval, **changes}  # fmt: skip
    return kind(resolver.fetch, **settings)


class _NoRefetch(JwksResolver):
    def refresh(self) -> None:  # a cycle that fetches nothing: the cache keeps its first keys forever
        with self._cycle:
            self._due_now = False
            self.started += 1
            self.refreshes += 1
            self._cycle.notify_all()


class _RefreshWithoutPush(JwksResolver):
    def refresh(self) -> None:  # fetches, but a change found by the refresh is never pushed
        on_change, self.on_change = self.on_change, None
        try:
            super().refresh()
        finally:
            self.on_change = on_change


class _NoBackgroundJob(JwksResolver):
    def _send_to_background(self) -> None:  # a failed main-flow fetch is never retried in the background
        return


class _OutageDropsKeys(JwksResolver):
    def _refresh_entry(self, key: tuple[str, str], entry: Entry, now: float) -> tuple[bool, bool]:
        had = entry.body
        pushed, failed = super()._refresh_entry(key, entry, now)
        if failed and had and entry.error is not None:  # a failed refresh forgets the last good keys
            entry.body = ""
            return True, True
        return pushed, failed


class _KeepsEmptyEntry(JwksResolver):
    def _delete(self, key: tuple[str, str], entry: Entry) -> None:  # a given-up entry stays: refreshes retry it
        if entry.body:
            super()._delete(key, entry)


@dataclass
class ResolverMutant(Mutant):
    """istiod's JWKS cache behaves as ``kind`` with ``changes``."""

    kind: type[JwksResolver] = JwksResolver
    changes: dict[str, Any] | None = None

    def resolver(self, resolver: JwksResolver) -> JwksResolver:
        return rebuild(resolver, self.kind, **(self.changes or {}))


@dataclass
class LeakedSubstitute(Mutant):
    """istiod inlines the leaked FakeJwks set where this version has the fixed one (a regression of the fix)."""

    def substitute_jwks(self, jwks: str, leaked: str) -> str:
        return leaked


def _short_cache(provider: Json) -> None:
    remote = provider.get("remoteJwks")
    if remote:
        remote["cacheDuration"] = "0.001s"


MUTANTS: list[Mutant] = [
    ResolverMutant("jwks-refresh-never-fetches",
                   breaks="JWKS refresh (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL): istiod never re-fetches a cached "
                          "JWKS, so rotated keys are never trusted", source=RESOLVER, kind=_NoRefetch),
    ResolverMutant("jwks-refresh-without-push",
                   breaks="JWKS refresh: istiod re-fetches but does not push changed keys to the proxies",
                   source=f"{RESOLVER} refresh → compareJWKSResponse → push", kind=_RefreshWithoutPush),
    ResolverMutant("jwks-no-background-retry",
                   breaks="a failed first JWKS fetch is never retried in the background, so a late JWKS server "
                          "is never trusted without a re-apply",
                   source=f"{RESOLVER} GetPublicKey → jwksuriChannel → refresher", kind=_NoBackgroundJob),
    ResolverMutant("jwks-given-up-entry-kept",
                   breaks="after its background retries fail, istiod keeps the empty entry and its periodic refresh "
                          "heals it (istiod deletes it: only the next push for any reason fetches it again)",
                   source=f"{RESOLVER} refresh (oldPubKey == \"\": keyEntries.Delete)", kind=_KeepsEmptyEntry),
    ResolverMutant("jwks-outage-drops-keys",
                   breaks="a failed periodic refresh drops the cached keys (istiod keeps the last good ones)",
                   source=f"{RESOLVER} refresh", kind=_OutageDropsKeys),
    ResolverMutant("jwks-non-jwks-body-substituted",
                   breaks="a 2xx body that is no JWKS: this release inlines it as-is (the proxy refuses the update "
                          "and keeps its previous config); the mutant substitutes, as only 1.32+ does",
                   source=f"{RESOLVER} validateJWKSFormat (master only)", changes={"accept_non_jwks": False}),
    LeakedSubstitute("jwks-substitute-leaked",
                     breaks="the failed-fetch substitute: istiod inlines FakeJwks, whose private key is public, on "
                            "a release with the fix (any token signed with it passes)", source=SUBSTITUTE),
    EditFilter("jwks-remote-cache-ignored",
               breaks="remoteJwks cache_duration (Istio sets 300 s): the proxy re-fetches for every request, so a "
                      "JWKS outage refuses every token at once", source=REMOTE, edit=each_provider(_short_cache)),
]
