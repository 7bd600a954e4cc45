"""The conformance suite: every case of every scenario (built-in and ``--scenarios``), on ``--target``."""

from meshjwt.pytest_plugin.scenarios import run_case


def test_case(scenario_case, runner, settings):
    """The mesh answers the case's request as the documentation says (N consecutive times)."""
    scenario, case = scenario_case
    run_case(runner, scenario, case, settings.target_reports_dir)
