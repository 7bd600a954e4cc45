"""Where the built-in suites, scenarios and manifests are: in the installed package, or in a source checkout.

``suites/`` and ``manifests/`` of the checkout are the source of truth; ``pyproject.toml`` maps them to the
packages ``meshjwt.suites`` and ``meshjwt.manifests``, so ``pip install .`` copies them into the package and an
editable install points at the checkout's folders.
"""

from __future__ import annotations

from importlib import resources
from importlib.util import find_spec
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def _folder(package: str, checkout_name: str) -> Path:
    """The folder of ``package``; the checkout's folder when the package is not installed (``PYTHONPATH=.``)."""
    if find_spec(package) is None:
        return _CHECKOUT / checkout_name
    return Path(str(resources.files(package)))


def suites_dir() -> Path:
    """The conformance suites: ``test_conformance.py``, its ``conftest.py`` and ``scenarios/``."""
    return _folder("meshjwt.suites", "suites")


def builtin_scenarios_dir() -> Path:
    """The built-in scenario files."""
    return suites_dir() / "scenarios"


def manifests_dir() -> Path:
    """The Istio resources of the scenarios (``scenarios/``) and the sample workloads (``workloads/``)."""
    return _folder("meshjwt.manifests", "manifests")


#: a scenario's ``manifests[].file`` that names a built-in manifest: ``builtin:scenarios/ra-httpbin-inline.yaml``
BUILTIN_PREFIX = "builtin:"


class UnknownManifest(ValueError):
    """A ``manifests[].file`` reference that names no file; the message says what would."""


def manifest_file(reference: str, relative_to: Path) -> Path:
    """The file a scenario's ``manifests[].file`` names: ``builtin:PATH`` under :func:`manifests_dir` (wherever the
    package is installed), anything else relative to the scenario file's folder ``relative_to``."""
    if not reference.startswith(BUILTIN_PREFIX):
        target = (relative_to / reference).resolve()
        if not target.is_file():
            raise UnknownManifest(f"{reference!r} not found (relative to the file; "
                                  f"a built-in manifest is {BUILTIN_PREFIX}scenarios/NAME.yaml)")  # fmt: skip
        return target
    root = manifests_dir().resolve()
    target = (root / reference.removeprefix(BUILTIN_PREFIX)).resolve()
    if not target.is_file() or root not in target.parents:
        names = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.yaml"))
        raise UnknownManifest(f"{reference!r} is no built-in manifest; there are: "
                              + ", ".join(BUILTIN_PREFIX + n for n in names))  # fmt: skip
    return target
