"""Mutants of what the proxy does to a request before any policy: path normalization (each meshConfig mode, as
istiod sets the HTTP connection manager) and jwt_authn's CORS preflight bypass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshjwt.localmesh.mutation import Json, Send
from meshjwt.mesh import Request, Response
from mutants.base import EditFilter, EditListener, Mutant, hcm

NORMALIZATION = ("istio/istio pilot/pkg/networking/core/listener_builder.go (meshConfig pathNormalization → "
                 "HttpConnectionManager normalize_path, merge_slashes, path_with_escaped_slashes_action)")
CORS = ("istio/istio pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig (bypass_cors_preflight); "
        "envoy source/extensions/filters/http/jwt_authn/filter.cc")


def _set(key: str, value: object, when: object) -> Callable[[Json], None]:
    def edit(listener: Json) -> None:
        config = hcm(listener)
        if config.get(key) == when:
            config[key] = value

    return edit


@dataclass
class BypassWhen(Mutant):
    """The proxy lets some requests past its filters (straight to the workload) when ``header`` is present or
    the method is ``method``: a preflight test that is too wide."""

    method: str | None = None
    header: str | None = None

    def answer(self, request: Request, through_proxy: Send, around_proxy: Send) -> Response:
        names = {name.lower() for name in request.headers}
        if (self.method and request.method == self.method) or (self.header and self.header.lower() in names):
            return around_proxy(request)
        return through_proxy(request)


MUTANTS: list[Mutant] = [
    EditListener("normalization-none-normalizes",
                 breaks="pathNormalization NONE: the proxy still resolves dot segments, so policies never see the "
                        "path as sent", source=NORMALIZATION, edit=_set("normalizePath", True, when=False)),
    EditListener("normalization-base-off",
                 breaks="pathNormalization BASE (the default): dot segments are not resolved before RBAC "
                        "(/x/../admin escapes a path rule)", source=NORMALIZATION,
                 edit=_set("normalizePath", False, when=True)),
    EditListener("normalization-merge-slashes-off",
                 breaks="pathNormalization MERGE_SLASHES: // is not merged before RBAC", source=NORMALIZATION,
                 edit=_set("mergeSlashes", False, when=True)),
    EditListener("normalization-escaped-slashes-kept",
                 breaks="pathNormalization DECODE_AND_MERGE_SLASHES: %2F is not decoded before RBAC",
                 source=NORMALIZATION,
                 edit=_set("pathWithEscapedSlashesAction", "KEEP_UNCHANGED", when="UNESCAPE_AND_FORWARD")),
    EditFilter("cors-preflight-checked",
               breaks="jwt_authn bypass_cors_preflight: a CORS preflight's token is verified (preflights fail)",
               source=CORS, edit=lambda config: config.update(bypassCorsPreflight=False)),
    BypassWhen("cors-any-options-bypasses",
               breaks="CORS preflight bypass: every OPTIONS request skips JWT, not only a preflight (Origin and "
                      "Access-Control-Request-Method)", source=CORS, method="OPTIONS"),
    BypassWhen("cors-any-origin-bypasses",
               breaks="CORS preflight bypass: any request with an Origin header skips JWT", source=CORS,
               header="Origin"),
]
