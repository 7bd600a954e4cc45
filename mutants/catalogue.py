"""The catalogue: every named mutant of the local reference mesh, by the part of Istio it weakens.

The local target loads it by path (``--local-mutation mutants/catalogue.py:NAME``), so it puts the repository
on ``sys.path`` for its sibling modules. Rule: every Istio field and behaviour the local mesh translates or
models has at least one mutant that weakens it (``tests/test_mutants.py`` checks the list of them)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from mutants import authn, authz, behaviour, http, jwks  # noqa: E402
from mutants.base import Mutant  # noqa: E402

MUTANTS: list[Mutant] = [*authn.MUTANTS, *authz.MUTANTS, *http.MUTANTS, *jwks.MUTANTS, *behaviour.MUTANTS]
CATALOGUE: dict[str, Mutant] = {m.name: m for m in MUTANTS}
assert len(CATALOGUE) == len(MUTANTS), "two mutants share a name"
