"""Benchmark of the local target: prints the figures the project tracks (no assertions; see tests/ for those).

    python benchmarks/local_run.py [--runs N]

1. Whole `pytest suites --target local` run, wall time (median of N runs, Envoy start included), with
   and without writing the conformance report (its overhead in %).
2. In process: Envoy cold start, local mesh start, apply → converged per scenario, per-check time,
   per-request time, Envoy resident memory, count of checks and requests.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshjwt.keys import KeySet  # noqa: E402
from meshjwt.localmesh.envoy import Envoy, envoy_binary  # noqa: E402
from meshjwt.report.model import RunInfo, build_report  # noqa: E402
from meshjwt.report.writers import write_html, write_yaml  # noqa: E402
from meshjwt.scenarios.loader import BUILTIN_DIR, load_scenarios  # noqa: E402
from meshjwt.scenarios.runner import ScenarioRunner  # noqa: E402
from meshjwt.settings import Settings, Timeouts  # noqa: E402
from meshjwt.targets.local import LocalMesh  # noqa: E402
from meshjwt.tokens import TokenFactory  # noqa: E402


def whole_run(extra: list[str]) -> tuple[float, str]:
    """Wall seconds of one full local conformance run in a fresh interpreter, and its summary line."""
    with tempfile.TemporaryDirectory() as reports:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "suites", "-q", "--target", "local", "--reports-dir", reports, *extra],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    summary = next((line for line in reversed(result.stdout.splitlines()) if " in " in line and "passed" in line), "?")
    if result.returncode != 0:
        raise SystemExit(f"the local run failed (exit {result.returncode}):\n{result.stdout[-2000:]}")
    return seconds, summary


def envoy_cold_start(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as work:
            envoy = Envoy(Path(work), envoy_binary())
            started = time.perf_counter()
            envoy.start(timeout=20)
            times.append(time.perf_counter() - started)
            envoy.stop()
    return times


def in_process() -> dict[str, object]:
    """Start the mesh once and run every built-in scenario, timing each phase."""
    keys = KeySet()
    settings = Settings(timeouts=Timeouts.of(LocalMesh.default_timeouts))
    mesh = LocalMesh(settings, keys.jwks_json())
    started = time.perf_counter()
    mesh.start()
    mesh_start = time.perf_counter() - started
    runner = ScenarioRunner(mesh, TokenFactory(keys), settings)
    converged, checks, requests = [], [], 0
    try:
        for scenario in load_scenarios([BUILTIN_DIR]):
            started = time.perf_counter()
            runner.ensure(scenario)
            first = runner.run(scenario, scenario.cases[0])
            converged.append(time.perf_counter() - started)
            for result in [first] + [runner.run(scenario, case) for case in scenario.cases[1:]]:
                assert result.outcome and result.outcome.passed, result.detail
                checks.append(result.outcome.seconds)
                requests += result.outcome.attempts
        rss = mesh.envoy.memory_rss_kib()
        report = []
        with tempfile.TemporaryDirectory() as out:
            for _ in range(5):  # what the report plugin does at the end of a run: build, then write both files
                started = time.perf_counter()
                doc = build_report(runner.results, RunInfo("local", mesh.info(), settings.timeouts.as_dict()))
                write_yaml(doc, Path(out) / "r.yaml")
                write_html(doc, Path(out) / "r.html")
                report.append(time.perf_counter() - started)
    finally:
        mesh.stop()
    return {"mesh_start": mesh_start, "converged": converged, "checks": checks, "requests": requests,
            "apply": runner.apply_seconds, "rss_kib": rss, "report": report}  # fmt: skip


def rehearsal_kind_leg() -> dict[str, float]:
    """Wall time and kubectl exec calls of the kind rehearsal (create → install → deploy → cases → delete)."""
    with tempfile.TemporaryDirectory() as reports:
        started = time.perf_counter()
        argv = [sys.executable, "-m", "rehearsal", "kind", "--reports-dir", reports, "--", "-q", "-s"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - started
    out = done.stdout + done.stderr
    calls = re.search(r"kubectl exec calls: (\d+) sending requests, (\d+) reading proxy config", out)
    passed = re.search(r"(\d+) passed", out)
    failed = re.search(r"(\d+) failed", out)
    if not calls or not passed:
        raise SystemExit(f"the kind rehearsal did not report its figures (exit {done.returncode}): {out[-400:]}")
    ran = int(passed.group(1)) + (int(failed.group(1)) if failed else 0)
    return {"wall": wall, "cases": ran, "exec": int(calls.group(1)), "probe": int(calls.group(2)),
            "exit": done.returncode}  # fmt: skip


def golden_missing() -> str | None:
    """Why the kind rehearsal cannot run here (Istio's golden data unavailable), or None."""
    from rehearsal.istio.golden import GoldenMissing, golden_dir

    try:
        golden_dir()
    except GoldenMissing as exc:
        return str(exc)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the whole run (median is printed)")
    parser.add_argument("--no-rehearsal", action="store_true", help="skip the kind rehearsal leg")
    args = parser.parse_args()

    with_report, without_report = [], []
    for _ in range(args.runs):  # interleaved, so drift on the machine hits both alike
        with_report.append(whole_run([]))
        without_report.append(whole_run(["--no-report"])[0])
    cold = envoy_cold_start(5)
    figures = in_process()
    cases = re.search(r"(\d+) passed", with_report[0][1])
    wall = statistics.median(s for s, _ in with_report)
    bare = statistics.median(without_report)
    ms = 1000.0
    rows = [
        (f"whole local run, wall (median of {args.runs})", f"{wall:.2f} s", with_report[0][1].strip("= ")),
        ("  same run without the report files", f"{bare:.2f} s", "--no-report"),
        ("  difference with/without report", f"{(wall - bare) / bare * 100:+.1f} %", "whole runs: noisy (±10 %)"),
        ("report generation (median of 5)", f"{statistics.median(figures['report']) * ms:.1f} ms",
         f"build + YAML + HTML = {statistics.median(figures['report']) / wall * 100:.2f} % of the run's wall time"),
        ("cases run (one test each)", cases.group(1) if cases else "?", ""),
        ("Envoy cold start (median of 5)", f"{statistics.median(cold) * ms:.0f} ms", "spawn → admin ready"),
        ("local mesh start", f"{figures['mesh_start'] * ms:.0f} ms", "Envoy + workloads + first config"),
        ("apply → acknowledged (median)", f"{statistics.median(figures['apply']) * ms:.1f} ms",
         f"{len(figures['apply'])} scenarios, clear + apply"),
        ("apply → converged (median)", f"{statistics.median(figures['converged']) * ms:.1f} ms",
         "apply until the first case has 3 agreeing answers"),
        ("per-check (median)", f"{statistics.median(figures['checks']) * ms:.2f} ms",
         f"{len(figures['checks'])} checks, 3 consecutive requests each"),
        ("per-check (max)", f"{max(figures['checks']) * ms:.1f} ms", ""),
        ("requests sent", str(figures["requests"]), ""),
        ("Envoy resident memory", f"{figures['rss_kib'] / 1024:.1f} MiB", "VmRSS after all scenarios"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"local target benchmark ({sys.platform}, python {sys.version.split()[0]})")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")
    if not args.no_rehearsal and (missing := golden_missing()):
        print(f"rehearsal kind leg: not measured: {missing}")
    elif not args.no_rehearsal:
        leg = rehearsal_kind_leg()
        print(f"rehearsal kind leg wall time: {leg['wall']:.1f} s (exit {leg['exit']}; {leg['cases']} cases run; "
              "create, Istio install, workloads, cases, delete against the simulated cluster)")  # fmt: skip
        print(f"rehearsal exec calls per case: {leg['exec'] / leg['cases']:.2f} ({leg['exec']} request rounds; "
              f"plus {leg['probe']} config reads after applies, {leg['probe'] / leg['cases']:.2f} per case)")


if __name__ == "__main__":
    main()
