"""Registry of targets: a name → a Mesh class, imported lazily (as pytest-testinfra does for backends)."""

from __future__ import annotations

import importlib

from meshjwt.errors import ConfigError
from meshjwt.mesh import Mesh

#: target name → "module:Class"; modules are imported only when chosen.
TARGETS: dict[str, str] = {
    "local": "meshjwt.targets.local:LocalMesh",
    "kind": "meshjwt.targets.kind:KindMesh",
    "cluster": "meshjwt.targets.cluster:ClusterMesh",
}


def target_class(name: str) -> type[Mesh]:
    """Return the Mesh class for ``name`` or raise a one-line ConfigError."""
    try:
        spec = TARGETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown --target {name!r}: choose one of {', '.join(sorted(TARGETS))}"
        ) from None
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigError(f"--target {name} is not built in this version of the suite; use --target local") from None
    return getattr(module, class_name)
