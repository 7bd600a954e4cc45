"""Mutants of behaviour across requests: a proxy whose answer changes from one request to the next (a race, a
cache keyed wrongly, a fail-open after errors). Istio's contract is per request: every request is checked
(Envoy runs the jwt_authn and RBAC filters on each one; ../shared/reference/istio-jwt-semantics.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshjwt.localmesh.mutation import Send
from meshjwt.mesh import Request, Response
from mutants.base import Mutant

PER_REQUEST = "envoy source/extensions/filters/http/jwt_authn/filter.cc decodeHeaders (every request is verified)"
RBAC_PER_REQUEST = "envoy source/extensions/filters/http/rbac/rbac_filter.cc decodeHeaders (every request)"


def _token(request: Request) -> str | None:
    """The request's token, wherever it is (a header or the access_token parameter), or None."""
    for name, value in [*request.headers.items(), *request.extra_headers]:
        if name.lower() == "authorization" or "jwt" in name.lower() or "token" in name.lower():
            return value
    return request.path if "token=" in request.path else None


@dataclass
class EveryNth(Mutant):
    """Every ``n``-th request (carrying a token, if ``with_token``) skips the proxy's checks."""

    n: int = 4
    with_token: bool = True
    seen: int = field(default=0, repr=False)

    def answer(self, request: Request, through_proxy: Send, around_proxy: Send) -> Response:
        if self.with_token and _token(request) is None:
            return through_proxy(request)
        self.seen += 1
        return around_proxy(request) if self.seen % self.n == 0 else through_proxy(request)


@dataclass
class FirstOnly(Mutant):
    """Only the first request with a given token is checked; its verdict is not cached, the token is trusted."""

    checked: set[str] = field(default_factory=set, repr=False)

    def answer(self, request: Request, through_proxy: Send, around_proxy: Send) -> Response:
        token = _token(request)
        if token is None:
            return through_proxy(request)
        if token in self.checked:
            return around_proxy(request)
        self.checked.add(token)
        return through_proxy(request)


@dataclass
class AfterN(Mutant):
    """After ``n`` requests in all, requests carrying a token skip the checks (a counter that overflows a limit)."""

    n: int = 200
    seen: int = field(default=0, repr=False)

    def answer(self, request: Request, through_proxy: Send, around_proxy: Send) -> Response:
        self.seen += 1
        if self.seen > self.n and _token(request) is not None:
            return around_proxy(request)
        return through_proxy(request)


@dataclass
class OpenAfterRefusal(Mutant):
    """After a refused request, the next one is let through (a fail-open retry after an error)."""

    refused: bool = field(default=False, repr=False)

    def answer(self, request: Request, through_proxy: Send, around_proxy: Send) -> Response:
        if self.refused:
            self.refused = False
            return around_proxy(request)
        response = through_proxy(request)
        self.refused = response.status in (401, 403)
        return response


MUTANTS: list[Mutant] = [
    EveryNth("every-4th-token-accepted",
             breaks="per-request verification: every 4th request carrying a token is answered before any check",
             source=PER_REQUEST, n=4),
    EveryNth("every-7th-request-unchecked",
             breaks="per-request authorization: every 7th request, token or not, skips jwt_authn and RBAC",
             source=RBAC_PER_REQUEST, n=7, with_token=False),
    FirstOnly("first-request-only-checked",
              breaks="per-request verification: only the first request with a token is verified, later ones with "
                     "the same token are trusted", source=PER_REQUEST),
    AfterN("accepts-after-200-requests",
           breaks="per-request verification: after 200 requests, tokens are no longer checked", source=PER_REQUEST),
    OpenAfterRefusal("fail-open-after-refusal",
                     breaks="per-request verification: the request after a 401/403 is let through unchecked",
                     source=RBAC_PER_REQUEST),
]
