"""istiod's JWKS resolver, locally: fetch a jwksUri from the istio-system namespace and inline the keys."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass

from meshjwt.localmesh.world import World


@dataclass(frozen=True)
class FetchResult:
    """The JWKS text, or why it could not be had."""

    jwks: str | None
    error: str | None = None


def http_get(world: World, url: str, from_namespace: str, timeout: float, ca_file: str) -> FetchResult:
    """GET ``url`` as a pod of ``from_namespace`` would: cluster DNS of the local world, the run's CA."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return FetchResult(None, f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loopback = world.resolve(parts.hostname, port, from_namespace)
    if loopback is None:
        return FetchResult(None, f"{parts.hostname}:{port} does not resolve from namespace {from_namespace}")
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
        return FetchResult(None, f"GET {url}: {exc}")
    finally:
        conn.close()
    if response.status != 200:
        return FetchResult(None, f"GET {url}: HTTP {response.status}")
    return FetchResult(body)


def fetch_jwks(world: World, uri: str, issuer: str, timeout: float, ca_file: str,
               from_namespace: str = "istio-system") -> FetchResult:
    """The keys at ``uri``; without a uri, OpenID discovery at ``<issuer>/.well-known/openid-configuration``."""
    if not uri:
        discovery = http_get(world, issuer.rstrip("/") + "/.well-known/openid-configuration",
                             from_namespace, timeout, ca_file)  # fmt: skip
        if discovery.jwks is None:
            return discovery
        try:
            uri = json.loads(discovery.jwks)["jwks_uri"]
        except (ValueError, KeyError, TypeError):
            return FetchResult(None, f"no jwks_uri in the discovery document of {issuer}")
    result = http_get(world, uri, from_namespace, timeout, ca_file)
    if result.jwks is not None:
        try:
            if not isinstance(json.loads(result.jwks).get("keys"), list):
                return FetchResult(None, f"{uri} did not return a JWKS")
        except (ValueError, AttributeError):
            return FetchResult(None, f"{uri} did not return JSON")
    return result


class _SniHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a loopback port, with SNI and certificate checks for the real hostname."""

    def __init__(self, address: str, port: int, hostname: str, **kwargs) -> None:
        super().__init__(address, port, **kwargs)
        self._hostname = hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._hostname)
