"""Run settings: the options of one run, with named timeouts (as Gateway API conformance names its waits)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

FLAVORS = ("istio", "asm")
JWKS_FETCH_MODES = ("istiod", "hybrid", "envoy")


@dataclass(frozen=True)
class Timeouts:
    """Every wait of the suite, by name, in seconds. Raise them for slow managed clouds."""

    start: float = 60.0  # target up (local: Envoy + workloads listening; kind: cluster created, node ready)
    install: float = 600.0  # Istio installed and its control plane and gateway ready (kind)
    deploy: float = 300.0  # the sample workloads rolled out and ready (2/2 with sidecars)
    ready_poll: float = 2.0  # between readiness checks of the above
    apply: float = 30.0  # resources applied → every affected proxy runs the new configuration
    converge: float = 30.0  # max time for a case to reach N consecutive matching responses
    request: float = 10.0  # one request
    poll_interval: float = 0.1  # between attempts of a converging case
    consecutive: int = 3  # N consecutive agreements a case needs
    jwks_server: float = 120.0  # the in-cluster JWKS server (nginx-proxy) restarted, scaled up and ready, or gone
    jwks_refresh: float = 120.0  # istiod's next periodic JWKS refresh reached the proxies (> its refresh interval)

    @classmethod
    def of(cls, defaults: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> Timeouts:
        """The named timeouts: these defaults (a target's ``default_timeouts``), the user's overrides on top."""
        values = {f.name: getattr(cls(), f.name) for f in fields(cls)}
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        for key, value in {**(defaults or {}), **given}.items():
            values[key] = type(values[key])(value)
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Settings:
    """What a target needs to know about the run."""

    target: str = "local"
    flavor: str = "istio"
    version: str = "1.30"
    jwks_fetch_mode: str = "istiod"
    timeouts: Timeouts = field(default_factory=Timeouts)
    reports_dir: Path = Path("reports")
    supported_features: frozenset[str] | None = None  # None: every feature not exempted or in the table
    exempt_features: frozenset[str] = frozenset()
    #: target-specific options (kubeconfig, istio version, ...), by option dest name
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target_reports_dir(self) -> Path:
        return self.reports_dir / self.target
