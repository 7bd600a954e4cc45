"""A scenario is a record: the claim it proves, its features, the Istio resources, and request → response cases."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshjwt.mesh import MeshInfo, Request


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@dataclass(frozen=True)
class When:
    """Where an override holds: a mesh flavour, a version range, a JWKS fetch mode (each optional)."""

    flavor: str | None = None
    version_below: str | None = None
    version_at_least: str | None = None
    jwks_fetch_mode: str | None = None

    def holds(self, info: MeshInfo, fetch_mode: str) -> bool:
        version = _version(info.version)
        return ((self.flavor is None or self.flavor == info.flavor)
                and (self.version_below is None or version < _version(self.version_below))
                and (self.version_at_least is None or version >= _version(self.version_at_least))
                and (self.jwks_fetch_mode is None or self.jwks_fetch_mode == fetch_mode))  # fmt: skip


@dataclass(frozen=True)
class Override:
    """Another expectation where ``when`` holds, with the reason it differs."""

    when: When
    expect: Expectation


@dataclass(frozen=True)
class Expectation:
    """Expected response; ``overrides`` change it for some mesh flavours/versions/modes, with a reason."""

    status: int
    body: str | None = None
    body_contains: str | None = None
    #: a fragment the body must not hold (httpbin echoes the headers it received: a header the proxy must remove)
    body_lacks: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    overrides: tuple[Override, ...] = ()

    def for_mesh(self, info: MeshInfo, fetch_mode: str) -> Expectation:
        """The expectation that holds for this mesh: the first override whose ``when`` matches, else self."""
        return next((o.expect for o in self.overrides if o.when.holds(info, fetch_mode)), self)

    def mismatch(self, status: int, headers: Mapping[str, str], body: str) -> str | None:
        """None if the response meets the expectation, else what differs (one line)."""
        if status != self.status:
            return f"status {status} != expected {self.status}"
        if self.body is not None and body.strip() != self.body:
            return f"body {body.strip()[:200]!r} != expected {self.body!r}"
        if self.body_contains is not None and self.body_contains not in body:
            return f"body {body.strip()[:200]!r} does not contain {self.body_contains!r}"
        if self.body_lacks is not None and self.body_lacks in body:
            return f"body {body.strip()[:200]!r} contains {self.body_lacks!r}"
        for name, fragment in self.headers.items():
            value = headers.get(name.lower())
            if value is None or fragment not in value:
                return f"header {name}: {value!r} does not contain {fragment!r}"
        return None

    def describe(self) -> str:
        parts = [str(self.status)]
        if self.body is not None:
            parts.append(f"body {self.body!r}")
        if self.body_contains is not None:
            parts.append(f"body ∋ {self.body_contains!r}")
        if self.body_lacks is not None:
            parts.append(f"body ∌ {self.body_lacks!r}")
        parts += [f"{k} ∋ {v!r}" for k, v in self.headers.items()]
        return ", ".join(parts)


@dataclass(frozen=True)
class TokenSpec:
    """Which token to send and where: none, a minted one (kind, alg, claims) or a literal one."""

    kind: str | None = None  # None: no token
    alg: str = "RS256"
    claims: Mapping[str, Any] = field(default_factory=dict)
    literal: str | None = None
    header: str = "Authorization"
    prefix: str = "Bearer "
    param: str | None = None
    jose: Mapping[str, Any] = field(default_factory=dict)  # JOSE header members to set (attack kinds)

    @property
    def present(self) -> bool:
        return self.kind is not None or self.literal is not None

    @property
    def is_attack(self) -> bool:
        """A token that must not get through (anything but none or the run's own valid one): a 2xx to it is
        an accepted attack."""
        return self.present and self.kind != "valid"

    def describe(self) -> str:
        if not self.present:
            return "none"
        what = "literal" if self.literal is not None else f"{self.kind} {self.alg}"
        if self.claims:
            what += f" claims={dict(self.claims)}"
        if self.jose:
            what += f" joseHeader={dict(self.jose)}"
        where = f"?{self.param}=" if self.param else f"{self.header}: {self.prefix}"
        return f"{what} in {where!r}"


@dataclass(frozen=True)
class Case:
    """One request and what must come back."""

    scenario: str
    name: str
    request: Request
    token: TokenSpec
    expect: Expectation
    features: tuple[str, ...] = ()
    description: str = ""
    extra_tokens: tuple[TokenSpec, ...] = ()  # more tokens in the same request (a repeated header, a param)
    #: mesh operations done before this case's request (JWKS lifecycle), each ``{name: value}``
    actions: tuple[Mapping[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"


@dataclass(frozen=True)
class Scenario:
    """The record: name, the documented claim (section), features, Istio resources, cases."""

    name: str
    section: str
    source: str  # file it came from
    features: tuple[str, ...]
    manifests: tuple[Mapping[str, Any], ...]  # resources, ``${VAR}`` not yet substituted
    cases: tuple[Case, ...]
    description: str = ""
    jwks_fetch_mode: str | None = None
    before: tuple[Mapping[str, Any], ...] = ()  # mesh operations done before its resources are applied
    expect_apply: Mapping[str, Any] | None = None  # {fails: true, message: ...}: the mesh must refuse the apply
    path_normalization: str | None = None  # meshConfig pathNormalization the scenario needs (None: the run's)

    @property
    def sequential(self) -> bool:
        """Cases that are steps in time (operations between them) run one by one, in file order."""
        return bool(self.before) or any(case.actions for case in self.cases)
