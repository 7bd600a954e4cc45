"""The package's floors: every import goes down (or sideways within a floor), never up, and no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "meshjwt"
#: floor of each top-level module or subpackage of meshjwt, bottom first
FLOORS: dict[str, int] = {
    # 0: facts and shared types every layer may use
    "__version__": 0, "errors": 0, "keys": 0, "tokens": 0, "pki": 0, "settings": 0, "mesh": 0, "data": 0,
    "samples": 0, "features": 0, "placeholders": 0, "jwks_compare": 0, "notrun": 0, "launcher": 0,
    # 1: machinery with one job each: convergence, the reference mesh's parts, the cluster tools
    "converge": 1, "localmesh": 1, "kube": 1,
    # 2: scenarios (model, loader, runner)
    "scenarios": 2,
    # 3: targets (local on localmesh; kind and cluster on kube), reports
    "targets": 3, "report": 3,
    # 4: entry points: the pytest plugin, the security qualification, the playground, the CLI
    "pytest_plugin": 4, "security": 4, "playground": 4, "run": 4, "validate": 4, "__main__": 4, "__init__": 4,
}  # fmt: skip


def imports() -> set[tuple[str, str, str]]:
    """(importing unit, imported unit, file) for every ``meshjwt.*`` import across units."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        unit = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "meshjwt":
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("meshjwt.")]
            found.update((unit, name, str(relative)) for name in names if name != unit)
    return found


def test_every_unit_has_a_floor():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert units <= set(FLOORS), f"give these a floor in FLOORS: {sorted(units - set(FLOORS))}"


def test_no_import_goes_up_a_floor():
    upward = sorted(f"{where}: {unit} (floor {FLOORS[unit]}) imports {target} (floor {FLOORS[target]})"
                    for unit, target, where in imports() if FLOORS.get(target, 0) > FLOORS.get(unit, 0))  # fmt: skip
    assert not upward, "\n".join(upward)


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for unit, target, _ in imports():
        graph.setdefault(unit, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        nexts = graph.get(start, ())
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in nexts)

    cycles = sorted(unit for unit in graph if reaches(unit, unit, {unit}))
    assert not cycles, f"units on an import cycle: {cycles}"
