"""The README is the short way in (≤ 8 KB: quick start, what a run proves, targets, links); the rest is in docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_fits_in_8_kb_with_its_four_parts() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 8192
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings == ["Quick start", "What a run proves", "Targets", "Documentation"]


def test_every_link_of_the_readme_and_docs_points_at_a_file() -> None:
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name}: {target}"
