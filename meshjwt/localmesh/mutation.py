"""The local mesh's one seam for deliberate bugs (mutation testing of the suite, ``tox -e mutants``).

A :class:`Mutation` changes what one part of the reference mesh does, the way a real mesh's bug would: what
istiod reads of the applied resources, the Envoy listeners it programs, its JWKS cache, the key set it inlines
when a fetch failed, and the data path of each request. Every hook's default is the reference behaviour, so
a mutant overrides one hook. The local target takes one with ``--local-mutation FILE:NAME`` (a Python file
whose ``CATALOGUE`` maps names to mutations); nothing else of the mesh is patched from outside.

A mutation is for measuring the suite, never for a conformance run: the report names it in the mesh's details.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshjwt.errors import ConfigError

if TYPE_CHECKING:
    from meshjwt.localmesh.jwks_resolver import JwksResolver
    from meshjwt.mesh import Request, Response

Json = dict[str, Any]
Send = Callable[["Request"], "Response"]


class Mutation:
    """The reference behaviour at every hook; a mutant subclasses it and overrides one (or sets the fields).

    ``breaks`` names the Istio field or behaviour the mutant weakens; ``source`` where Istio defines the
    right behaviour (a file of istio/istio or envoyproxy/envoy, or the reference's section)."""

    name: str = "reference"
    breaks: str = ""
    source: str = ""

    def resources(self, resources: list[Json]) -> list[Json]:
        """istiod's view of the applied Istio resources (deep copies; the mesh keeps the originals)."""
        return resources

    def listener(self, listener: Json) -> Json:
        """One Envoy listener istiod programs (HCM settings, ``jwt_authn`` and RBAC filters), before the push."""
        return listener

    def resolver(self, resolver: JwksResolver) -> JwksResolver:
        """istiod's JWKS cache, once built (its fetcher, intervals, retries, what it accepts, may be changed)."""
        return resolver

    def substitute_jwks(self, jwks: str, leaked: str) -> str:
        """The key set istiod inlines for a jwksUri it could not fetch: ``jwks``, this version's; ``leaked``, the
        ``FakeJwks`` set of the releases whose private key is public (the run's stand-in for it)."""
        return jwks

    def answer(self, request: Request, through_proxy: Send, around_proxy: Send) -> Response:
        """The data path of one request: ``through_proxy`` sends it through Envoy (the reference path),
        ``around_proxy`` straight to the workload behind the proxy (a proxy that skipped its filters)."""
        return through_proxy(request)


REFERENCE = Mutation()


def load(spec: str | None) -> Mutation:
    """The mutation named by ``FILE:NAME`` (``CATALOGUE[NAME]`` of the Python file FILE); the reference for None.

    An unknown name or a file without a catalogue is one line naming what to fix (the known names)."""
    if not spec:
        return REFERENCE
    path_text, _, name = spec.rpartition(":")
    path = Path(path_text)
    if not path_text or not name or not path.is_file():
        raise ConfigError(f"--local-mutation {spec!r}: expected FILE:NAME with FILE an existing Python file")
    catalogue = catalogue_of(path)
    if name not in catalogue:
        raise ConfigError(f"--local-mutation: unknown mutant {name!r}; known: {', '.join(sorted(catalogue))}")
    return catalogue[name]


def catalogue_of(path: Path) -> Mapping[str, Mutation]:
    """The ``CATALOGUE`` (name → :class:`Mutation`) of the Python file at ``path``."""
    module_name = f"meshjwt_mutants_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"--local-mutation: {path} is no Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    catalogue = getattr(module, "CATALOGUE", None)
    if not isinstance(catalogue, Mapping):
        raise ConfigError(f"--local-mutation: {path} has no CATALOGUE mapping of names to mutations")
    return catalogue
