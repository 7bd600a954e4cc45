"""Errors a user can act on: each renders as one line naming the thing to fix."""

from __future__ import annotations


class MeshJwtError(Exception):
    """Base class of user-facing errors; ``str()`` is a single line."""

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split()) if self.args else self.__class__.__name__


class ConfigError(MeshJwtError):
    """Bad option, bad scenario file, unknown target: fix your input."""


class UnsupportedField(MeshJwtError):
    """An Istio field the local reference mesh does not implement (never silently ignored)."""


class EnvironmentProblem(MeshJwtError):
    """Something missing on the machine: Docker, a binary, a free port, a reachable cluster."""


class TargetCannot(MeshJwtError):
    """The target cannot provide what a scenario needs (e.g. another JWKS fetch mode on a running mesh):
    the scenario is reported unsupported, never failed."""


class ApplyRefused(MeshJwtError):
    """The mesh refused the resources at apply time, as Istio's validation webhook does (``kubectl apply``
    fails with its message); a scenario can expect it (``expectApply``)."""
