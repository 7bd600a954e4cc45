"""The documented scenario example (docs/scenarios.md) is a real file, and it runs through --scenarios."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def test_readme_example_is_the_shipped_file():
    readme = (ROOT / "docs" / "scenarios.md").read_text()
    blocks = re.findall(r"```yaml\n(apiVersion: meshjwt.*?)```", readme, re.S)
    assert blocks, "docs/scenarios.md shows a scenario example"
    assert blocks[0] == (ROOT / "examples" / "scenarios" / "admin-only.yaml").read_text()


@pytest.mark.integration
def test_readme_example_runs_through_scenarios(pytester: pytest.Pytester):
    result = pytester.runpytest(str(ROOT / "suites"), "-q", "--scenarios", str(ROOT / "examples" / "scenarios"),
                                "-k", "admin-claim-required", "--reports-dir", "r")  # fmt: skip
    result.assert_outcomes(passed=3)
    junit = (pytester.path / "r" / "local" / "junit.xml").read_text()
    for case in ("admin-token", "developer-token", "expired-token-elsewhere"):
        assert f"admin-claim-required/{case}" in junit
