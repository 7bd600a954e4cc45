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
