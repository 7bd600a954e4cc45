"""The README's scenario example is a real file, and it runs through --scenarios."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_is_the_shipped_file():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(apiVersion: meshjwt.*?)```", readme, re.S)
    assert blocks, "the README shows a scenario example"
    assert blocks[0] == (ROOT / "examples" / "admin-only.yaml").read_text()


def test_readme_example_runs_through_scenarios(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "suites", "-q", "--scenarios", "examples/", "-k", "admin-claim-required",
         "--reports-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    for case in ("admin-token", "developer-token", "expired-token-elsewhere"):
        assert f"admin-claim-required/{case}" in (tmp_path / "local" / "junit.xml").read_text()
