"""Building blocks of mutants: each is a :class:`meshjwt.localmesh.mutation.Mutation` that overrides one hook.

Helpers walk the Istio resources istiod reads (:class:`IgnoreField`, :class:`EditResources`) or the Envoy
listeners it programs (:class:`EditFilter`, :class:`EditListener`); :func:`walk` finds every dict below one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from meshjwt.localmesh.mutation import Json, Mutation

JWT_AUTHN = "envoy.filters.http.jwt_authn"
RBAC = "envoy.filters.http.rbac"


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in ``node`` (itself included), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def hcm(listener: Json) -> Json:
    """The HttpConnectionManager config of a listener (one filter chain, one network filter)."""
    return listener["filterChains"][0]["filters"][0]["typedConfig"]


def http_filters(listener: Json, name: str) -> list[Json]:
    """The typed configs of the listener's HTTP filters called ``name``."""
    return [f["typedConfig"] for f in hcm(listener)["httpFilters"] if f["name"] == name]


@dataclass
class Mutant(Mutation):
    """A named mutation with its one-line ``breaks`` and ``source``."""

    name: str
    breaks: str
    source: str


@dataclass
class EditResources(Mutant):
    """istiod misreads the applied resources: ``edit`` changes each resource of ``kind`` (in place)."""

    kind: str = ""
    edit: Callable[[Json], None] = lambda resource: None

    def resources(self, resources: list[Json]) -> list[Json]:
        for resource in resources:
            if resource.get("kind") == self.kind:
                self.edit(resource)
        return resources


def drop(*keys: str, within: str | None = None) -> Callable[[Json], None]:
    """An edit that deletes ``keys`` from every dict in the resource's spec (only below key ``within`` if given)."""

    def edit(resource: Json) -> None:
        spec = resource.get("spec") or {}
        roots = [spec] if within is None else [d[within] for d in walk(spec) if within in d]
        for root in roots:
            for node in walk(root):
                for key in keys:
                    node.pop(key, None)

    return edit


def IgnoreField(name: str, kind: str, *keys: str, breaks: str, source: str, within: str | None = None) -> EditResources:  # noqa: N802
    """istiod ignores ``keys`` of ``kind`` (a translator that drops a field)."""
    return EditResources(name, breaks, source, kind=kind, edit=drop(*keys, within=within))


@dataclass
class EditListener(Mutant):
    """istiod programs the listener wrongly: ``edit`` changes each listener (in place)."""

    edit: Callable[[Json], None] = lambda listener: None

    def listener(self, listener: Json) -> Json:
        self.edit(listener)
        return listener


@dataclass
class EditFilter(Mutant):
    """``edit`` changes the typed config of every HTTP filter called ``filter`` (jwt_authn or RBAC)."""

    filter: str = JWT_AUTHN
    edit: Callable[[Json], None] = lambda config: None

    def listener(self, listener: Json) -> Json:
        for config in http_filters(listener, self.filter):
            self.edit(config)
        return listener


def each_provider(edit: Callable[[Json], None]) -> Callable[[Json], None]:
    """An edit of a jwt_authn config that applies ``edit`` to each provider."""

    def run(config: Json) -> None:
        for provider in config.get("providers", {}).values():
            edit(provider)

    return run


def each_matcher(test: Callable[[Json], bool], edit: Callable[[Json], None]) -> Callable[[Json], None]:
    """An edit of an RBAC config that applies ``edit`` to every dict below its rules passing ``test``."""

    def run(config: Json) -> None:
        for node in list(walk(config.get("rules", {}))):
            if test(node):
                edit(node)

    return run
