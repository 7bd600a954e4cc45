"""Errors a user can act on: each renders as one line naming the thing to fix."""

from __future__ import annotations


class MeshJwtError(Exception):
    """Base class of user-facing errors; ``str()`` is a single line."""

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split()) if self.args else self.__class__.__name__


class FailsCase(MeshJwtError):
    """Raised while running a case, it fails the case (verdict error) with its one line."""


class SkipsCase(MeshJwtError):
    """Raised while running a case, it reports the case unsupported (skipped, never failed or passed)."""


class ConfigError(MeshJwtError):
    """Bad option, bad scenario file, unknown target: fix your input (the run stops with a usage error)."""


class UnsupportedField(FailsCase):
    """An Istio field the local reference mesh does not implement (never silently ignored): the case fails."""


class EnvironmentProblem(FailsCase):
    """Something missing or failing on the machine or cluster: Docker, a binary, a free port, a reachable
    cluster, an apply. At start the run ends with it (exit 3); during a case, the case fails."""


class TargetCannot(SkipsCase):
    """The target cannot provide what a scenario needs (e.g. another JWKS fetch mode on a mesh it does not
    own): the scenario is reported unsupported, never failed."""


class ApplyRefused(FailsCase):
    """The mesh refused the resources at apply time, as Istio's validation webhook does (``kubectl apply``
    fails with its message); a scenario can expect it (``expectApply``), else the case fails."""
