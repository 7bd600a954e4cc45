"""``python -m mutants [NAME ...]``: run the built-in suites on the local target once per mutant, report kills.

Each mutant is one ``pytest suites --target local --local-mutation mutants/catalogue.py:NAME`` run (the
default conformance run: no ``--security`` extras), as many at once as there are cores (``--jobs``). A mutant
is killed when a case *failed* (a wrong answer), not when one only errored: if Envoy refused the mutant's
config, the line says so, and that alone is no kill. Prints one line per mutant, then
``mutation score: K of N killed``; exits 1 if any survived (2 for bad input). ``--record`` writes the score
into ``meshjwt/sharpness.json``, which every conformance report quotes; a run whose score differs from the
recorded one says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from meshjwt.localmesh.mutation import Mutation, catalogue_of
from meshjwt.report.model import sharpness

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE_FILE = ROOT / "mutants" / "catalogue.py"
SHARPNESS_FILE = ROOT / "meshjwt" / "sharpness.json"
#: one mutant's whole run; a fast-failing suite needs seconds, a surviving one its ~3 s
RUN_TIMEOUT = 300.0
ENVOY_REFUSED = "envoy rejected the generated"


@dataclass(frozen=True)
class Result:
    """What one mutant's run showed."""

    name: str
    killed_by: str | None  # scenario/case of the first failed case
    refused: str | None  # Envoy refused the mutant's config (an error, no kill by itself)
    problem: str | None  # the run itself went wrong (no report, timeout)
    seconds: float

    def line(self) -> str:
        text = f"mutant {self.name}: " + (f"killed by {self.killed_by}" if self.killed_by else "SURVIVED")
        if self.refused:
            text += f" (Envoy refused its config: {self.refused})"
        if self.problem:
            text += f" ({self.problem})"
        return text


def catalogue() -> dict[str, Mutation]:
    """The mutants by name, loaded as the local target loads them."""
    return dict(catalogue_of(CATALOGUE_FILE))


def run_one(name: str, extra: list[str]) -> Result:
    """The built-in suites on the local target with mutant ``name``; the first failed case, if any."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"meshjwt-mutant-{name}-") as reports:
        argv = [sys.executable, "-m", "pytest", str(ROOT / "suites"), "--target", "local", "-q", "-p",
                "no:cacheprovider", f"--local-mutation={CATALOGUE_FILE}:{name}", "--reports-dir", reports,
                *extra]  # fmt: skip
        try:
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            return Result(name, None, None, f"no verdict within {RUN_TIMEOUT:g}s", time.monotonic() - started)
        seconds = time.monotonic() - started
        report_file = Path(reports) / "local" / "conformance-report.yaml"
        if not report_file.exists():
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            return Result(name, None, None, f"the run wrote no report (exit {done.returncode}): {last[0]}", seconds)
        report = yaml.safe_load(report_file.read_text())
    killed_by, refused = judge(report, done.stdout + done.stderr)
    return Result(name, killed_by, refused, None, seconds)


def judge(report: dict, output: str) -> tuple[str | None, str | None]:
    """The first *failed* case of a run's report (``scenario/case``), and whether Envoy refused a config (an
    error, which alone kills nothing)."""
    killed_by, refused = None, None
    for claim in report.get("claims", []):
        for case in claim.get("cases", []):
            detail = case.get("detail", "")
            if case["verdict"] == "failed" and killed_by is None:
                killed_by = f"{claim['id']}/{case['name']}"
            if ENVOY_REFUSED in detail and refused is None:
                refused = f"{claim['id']}: {detail[detail.find(ENVOY_REFUSED):][:160]}"
    if refused is None and ENVOY_REFUSED in output:
        refused = output[output.find(ENVOY_REFUSED):].splitlines()[0][:160]
    return killed_by, refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutants", description=__doc__.split("\n\n")[0],
                                     epilog="After --, more pytest options for each run (e.g. -- -k authz-).")
    parser.add_argument("names", nargs="*", help="mutants to run (default: the whole catalogue)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutant runs at once (default: cores)")
    parser.add_argument("--list", action="store_true", help="list the mutants: name, what it breaks, where Istio says")
    parser.add_argument("--record", action="store_true",
                        help=f"write the measured score to {SHARPNESS_FILE.relative_to(ROOT)} (whole catalogue only)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # after --: more pytest options for each run
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    known = catalogue()
    if args.list:
        for mutant in known.values():
            print(f"{mutant.name}: {mutant.breaks} [{mutant.source}]")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"unknown mutant {', '.join(unknown)}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    names = args.names or list(known)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, name, extra) for name in names]
        results = []
        for future in futures:  # in catalogue order, each printed as soon as it and those before it are done
            result = future.result()
            results.append(result)
            print(result.line(), flush=True)
    killed = sum(r.killed_by is not None for r in results)
    wall = time.monotonic() - started
    print(f"mutation score: {killed} of {len(results)} killed ({wall:.0f} s wall, {args.jobs} at once)")
    whole = not args.names and not extra  # the whole catalogue on the whole default run
    if whole and args.record:
        SHARPNESS_FILE.parent.mkdir(parents=True, exist_ok=True)
        SHARPNESS_FILE.write_text(json.dumps({"catalogue": len(results), "killed": killed,
                                              "measuredWith": "tox -e mutants"}, indent=1) + "\n")  # fmt: skip
        print(f"recorded in {SHARPNESS_FILE.relative_to(ROOT)}")
    elif whole:
        quoted = sharpness()  # what every report quotes
        if (quoted["mutants"], quoted["killed"]) != (len(results), killed):
            print(f"the score reports quote ({quoted['score']}) is not this one: "
                  f"run python -m mutants --record", file=sys.stderr)  # fmt: skip
            return 1
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
