"""Run settings: the options of one run, with named timeouts (as Gateway API conformance names its waits)."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

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


def option(flag: str, help: str, *, metavar: str | None = None, run_default: Any = None) -> Mapping[str, Any]:
    """The pytest flag of a :class:`TargetOptions` field: ``field(default=None, metadata=option(...))``.

    ``run_default``: the suite run's default when it differs from the field's (a mesh built in code)."""
    return {"flag": flag, "help": help, "metavar": metavar, "run_default": run_default}


_Options = TypeVar("_Options", bound="TargetOptions")


@dataclass(frozen=True)
class TargetOptions:
    """A target's own options, typed (as each pytest-testinfra backend takes its own keyword arguments).

    Each target subclasses it; every field is one pytest flag (its metadata from :func:`option`): a ``bool``
    is a switch, an ``int``/``float`` is converted, a value not given keeps the field's default."""

    @classmethod
    def flags(cls) -> list[tuple[str, dict[str, Any]]]:
        """``(flag, argparse keyword arguments)`` of every field, for ``parser.addoption``."""
        hints = typing.get_type_hints(cls)
        result = []
        for f in fields(cls):
            default = f.metadata.get("run_default")
            if default is None:
                default = None if f.default is MISSING else f.default
            kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"], "default": default}
            kind = hints[f.name]
            if kind is bool:
                kwargs["action"] = "store_true"
            else:
                given = [a for a in typing.get_args(kind) if a is not type(None)] if _is_union(kind) else [kind]
                if given and given[0] in (int, float):
                    kwargs["type"] = given[0]
                if f.metadata.get("metavar"):
                    kwargs["metavar"] = f.metadata["metavar"]
            result.append((f.metadata["flag"], kwargs))
        return result

    @classmethod
    def from_values(cls: type[_Options], values: Mapping[str, Any]) -> _Options:
        """These options from parsed values by field name (``None`` or missing: the field's default)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None})

    @classmethod
    def of(cls: type[_Options], given: TargetOptions) -> _Options:
        """``given`` as these options: itself if it is one, else the fields both have (the rest: defaults)."""
        return given if isinstance(given, cls) else cls.from_values(asdict(given))


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


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
    #: the target's own options (its ``Mesh.Options`` subclass: kubeconfig, Istio version, Envoy, ...)
    target_options: TargetOptions = field(default_factory=TargetOptions)
    #: the mesh's ``pathNormalization`` for this run (``--path-normalization``'s first mode; None: not set)
    path_normalization: str | None = None
    #: the security qualification (``--security``): its reports go to a folder of their own
    security: bool = False

    @property
    def run_kind(self) -> str:
        """The kind of run, which names its report folder: the target, or ``security`` (``security-<target>``
        on a target other than local) for the security qualification."""
        if not self.security:
            return self.target
        return "security" if self.target == "local" else f"security-{self.target}"

    @property
    def target_reports_dir(self) -> Path:
        """``<reports dir>/<run kind>/``: no kind of run overwrites another's reports."""
        return self.reports_dir / self.run_kind
