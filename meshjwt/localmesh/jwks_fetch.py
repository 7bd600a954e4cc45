"""istiod's JWKS resolver, locally: fetch a jwksUri from the istio-system namespace and inline the keys."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from meshjwt.localmesh.world import World


@dataclass(frozen=True)
class FetchResult:
    """The JWKS text, or why it could not be had."""

    jwks: str | None
    error: str | None = None


MAX_REDIRECTS = 10  # Go's http.Client, which istiod uses
REDIRECTS = (301, 302, 303, 307, 308)


def http_get(world: World, url: str, from_namespace: str, timeout: float, ca_file: str) -> FetchResult:
    """GET ``url`` as istiod's Go client would from a pod of ``from_namespace``: cluster DNS of the local
    world, the run's CA, up to 10 redirects followed, any 2xx answer taken (``timeout`` bounds the whole)."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            return FetchResult(None, f"GET {url}: timed out after {timeout:g}s")
        result, location = _get_once(world, url, from_namespace, left, ca_file)
        if location is None:
            return result
        url = urllib.parse.urljoin(url, location)
    return FetchResult(None, f"GET {url}: stopped after {MAX_REDIRECTS} redirects")


def _get_once(world: World, url: str, from_namespace: str, timeout: float,
              ca_file: str) -> tuple[FetchResult, str | None]:  # fmt: skip
    """One GET: its result, or the Location of a redirect."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return FetchResult(None, f"not an http(s) URL: {url}"), None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loopback = world.resolve(parts.hostname, port, from_namespace)
    if loopback is None:
        return FetchResult(None, f"{parts.hostname}:{port} does not resolve from namespace {from_namespace}"), None
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        conn: http.client.HTTPConnection = _SniHTTPSConnection(
            "127.0.0.1", loopback, parts.hostname, context=context, timeout=timeout
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", loopback, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request("GET", path + (f"?{parts.query}" if parts.query else ""), headers={"Host": parts.netloc})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return FetchResult(None, f"GET {url}: {type(exc).__name__}: {exc}"), None
    finally:
        conn.close()
    if response.status in REDIRECTS and response.getheader("Location"):
        return FetchResult(None), response.getheader("Location")
    if not 200 <= response.status < 300:
        return FetchResult(None, f"GET {url}: HTTP {response.status}"), None
    return FetchResult(body), None


def fetch_jwks(world: World, uri: str, issuer: str, timeout: float, ca_file: str,
               from_namespace: str = "istio-system") -> FetchResult:
    """The body at ``uri`` as istiod gets it (whether it is a JWKS is the resolver's business); without a uri,
    OpenID discovery at ``<issuer>/.well-known/openid-configuration``."""
    if not uri:
        discovery = http_get(world, issuer.rstrip("/") + "/.well-known/openid-configuration",
                             from_namespace, timeout, ca_file)  # fmt: skip
        if discovery.jwks is None:
            return discovery
        try:
            uri = json.loads(discovery.jwks)["jwks_uri"]
        except (ValueError, KeyError, TypeError):
            return FetchResult(None, f"no jwks_uri in the discovery document of {issuer}")
    return http_get(world, uri, from_namespace, timeout, ca_file)


class _SniHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a loopback port, with SNI and certificate checks for the real hostname."""

    def __init__(self, address: str, port: int, hostname: str, **kwargs) -> None:
        super().__init__(address, port, **kwargs)
        self._hostname = hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._hostname)
