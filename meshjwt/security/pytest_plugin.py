"""pytest plugin of the security qualification: ``--security``, ``--path-normalization``, the probe's fixtures,
the per-combination summary lines and ``reports/<target>/security-report.yaml``.

The token attacks are an ordinary scenario (``06-token-attacks``); this plugin adds the path-normalization
probe (``suites/test_security_probe.py``), which runs only with ``--security`` and only where the real
nginx/apache2 backends can run (the local mesh); elsewhere it is reported unsupported, never passed.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshjwt.launcher import command
from meshjwt.mesh import Mesh
from meshjwt.pytest_plugin.mesh import RUNNER
from meshjwt.pytest_plugin.options import SETTINGS
from meshjwt.security import report as security_report
from meshjwt.security.backends import BACKENDS
from meshjwt.security.corpus import DEFAULT_MUTATIONS, DEFAULT_SEED, Corpus
from meshjwt.security.probe import MODES, POLICIES, Combination, ProbeSetup, run_combination, start_backends
from meshjwt.settings import Settings

try:  # the conformance report's hook for extra sections (meshjwt/pytest_plugin/report.py)
    from meshjwt.pytest_plugin.report import REPORT_OUTPUTS, REPORT_SECTIONS
except ImportError:  # pragma: no cover - a report plugin without it: the HTML report just lacks the section
    REPORT_SECTIONS = REPORT_OUTPUTS = None

_PROBE = pytest.StashKey["SecurityProbe"]()
_RESULTS = pytest.StashKey[list[Combination]]()
_MODES = pytest.StashKey[tuple[str, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshjwt", "mesh-jwt-conformance")
    group.addoption("--security", action="store_true", default=False,
                    help="security qualification: run the path-normalization probe (real nginx/apache2 behind "
                         "the mesh) and write security-report.yaml; the token attacks run in every run")  # fmt: skip
    group.addoption("--allow-unsupported-probes", dest="allow_unsupported_probes", action="store_true",
                    default=False, help="with --security: a probe that cannot run (a backend missing, a target "
                    "without backends) is reported unsupported and skipped instead of failing the run")  # fmt: skip
    group.addoption("--path-normalization", dest="path_normalization", default=None,
                    help=f"meshConfig pathNormalization: {', '.join(MODES)}; comma-separated for several. "
                         "The local mesh runs with the first; the probe covers each (default: all four)")  # fmt: skip
    group.addoption("--probe-seed", dest="probe_seed", type=int, default=DEFAULT_SEED,
                    help=f"seed of the probe's hypothesis mutations (default {DEFAULT_SEED})")  # fmt: skip
    group.addoption("--probe-mutations", dest="probe_mutations", type=int, default=DEFAULT_MUTATIONS,
                    help=f"how many hypothesis mutations the probe adds (default {DEFAULT_MUTATIONS})")  # fmt: skip
    group.addoption("--probe-max-seconds", dest="probe_max_seconds", type=float, default=60.0,
                    help="time budget of one probe combination (mode × backend × policy), seconds (default 60)")


def parse_modes(value: str | None) -> tuple[str, ...]:
    """``--path-normalization`` → modes (upper-cased, validated); all four when not given."""
    if not value:
        return MODES
    modes = tuple(dict.fromkeys(m.strip().upper() for m in value.split(",") if m.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise pytest.UsageError(f"--path-normalization {value!r}: unknown mode {', '.join(unknown) or '(none)'}; "
                                f"choose from {', '.join(MODES)}")  # fmt: skip
    return modes


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Validate the options (one line, exit code 4); the local mesh starts in the first mode asked for."""
    option = config.option
    modes = parse_modes(option.path_normalization)
    config.stash[_MODES] = modes
    if option.probe_mutations < 0 or option.probe_max_seconds <= 0:
        raise pytest.UsageError("--probe-mutations must be ≥ 0 and --probe-max-seconds > 0")
    if option.security:
        try:
            import hypothesis  # noqa: F401
        except ImportError:
            raise pytest.UsageError("--security needs hypothesis: pip install 'mesh-jwt-conformance[security]' "
                                    f"(or run {command('security')})") from None  # fmt: skip
    if REPORT_OUTPUTS is not None:
        config.stash.setdefault(REPORT_OUTPUTS, set()).add(security_report.FILE_NAME)
    settings: Settings | None = config.stash.get(SETTINGS, None)
    if settings is not None and option.path_normalization:
        config.stash[SETTINGS] = dataclasses.replace(settings, path_normalization=modes[0])


def cannot_run(config: pytest.Config, why: str) -> None:
    """A probe that cannot run: a failure naming why (unsupported is not OK), or with ``--allow-unsupported-probes``
    a skip reported unsupported."""
    if config.option.allow_unsupported_probes:
        pytest.skip(f"unsupported: {why}")
    pytest.fail(f"the probe cannot run: {why} (--allow-unsupported-probes reports it unsupported instead)",
                pytrace=False)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--security`` the probe is not part of the run: its tests are deselected, not skipped."""
    if config.option.security:
        return
    probe = [item for item in items if "probe_combination" in getattr(item, "fixturenames", ())]
    if probe:
        config.hook.pytest_deselected(items=probe)
        items[:] = [item for item in items if item not in probe]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "probe_combination" in metafunc.fixturenames:
        modes = metafunc.config.stash.get(_MODES, MODES)
        combos = list(itertools.product(modes, BACKENDS, POLICIES))
        metafunc.parametrize("probe_combination", combos, ids=["-".join(c) for c in combos])


@dataclass
class SecurityProbe:
    """The probe's session state: the mesh, its backends, the corpus, and the results so far."""

    mesh: Mesh
    setup: ProbeSetup
    corpus: Corpus
    variables: dict[str, str]
    settings: Settings
    max_seconds: float
    results: list[Combination] = field(default_factory=list)

    def run(self, mode: str, backend: str, policy: str) -> Combination:
        result = run_combination(self.mesh, self.setup, mode, backend, policy, self.corpus,  # type: ignore[arg-type]
                                 self.variables, self.settings.timeouts, self.max_seconds)  # fmt: skip
        self.results.append(result)
        return result


def unsupported_reason(settings: Settings) -> str | None:
    """Why the probe cannot run on this target (None on the local mesh)."""
    if settings.target != "local":
        return (f"the {settings.target} target has no probe backends: nginx/apache2 run only beside the local "
                "mesh, and the mesh's pathNormalization is not read from its mesh config yet")  # fmt: skip
    return None


@pytest.fixture(scope="session")
def security_probe(request: pytest.FixtureRequest, settings: Settings) -> SecurityProbe:
    """The local mesh with nginx and apache2 behind sidecars, and the corpus; skips without ``--security``."""
    config = request.config
    if not config.option.security:
        pytest.skip(f"the path-normalization probe runs with --security ({command('security')})")
    reason = unsupported_reason(settings)
    if reason:
        config.stash[_RESULTS] = []
        cannot_run(config, reason)
    from meshjwt.security.corpus import build

    mesh: Mesh = request.getfixturevalue("mesh")
    tokens = request.getfixturevalue("tokens")
    corpus = build(config.option.probe_seed, config.option.probe_mutations)
    setup = start_backends(mesh, settings.timeouts.start)  # type: ignore[arg-type]
    probe = SecurityProbe(mesh, setup, corpus, {"ISSUER": tokens.issuer, **mesh.variables()}, settings,
                          config.option.probe_max_seconds)  # fmt: skip
    config.stash[_PROBE] = probe
    return probe


def _mesh_section(config: pytest.Config, settings: Settings) -> dict[str, Any]:
    probe = config.stash.get(_PROBE, None)
    mode = getattr(probe.mesh, "path_normalization", None) if probe else None
    return {"flavor": settings.flavor, "version": settings.version, "jwksFetchMode": settings.jwks_fetch_mode,
            "pathNormalization": mode or settings.path_normalization or "unknown (not read)"}  # fmt: skip


def build_report(config: pytest.Config) -> dict[str, Any] | None:
    """The security report of this session, or None when it had no security part."""
    settings: Settings | None = config.stash.get(SETTINGS, None)
    if settings is None or not config.option.security:
        return None
    probe = config.stash.get(_PROBE, None)
    runner = config.stash.get(RUNNER, None)
    results = list(runner.results) if runner else []
    return security_report.build(
        settings.target, _mesh_section(config, settings), probe.results if probe else [],
        probe.corpus if probe else None, results, unsupported=unsupported_reason(settings),
    )  # fmt: skip


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write security-report.yaml and hand the section to the conformance report (HTML)."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    document = build_report(config)
    if document is None:
        return
    settings: Settings = config.stash[SETTINGS]
    try:
        path = security_report.write(document, settings.target_reports_dir)
        config.stash[_WRITTEN] = (str(path), None)
    except OSError as exc:
        config.stash[_WRITTEN] = (None, f"could not write {security_report.FILE_NAME}: {exc}")
    if REPORT_SECTIONS is not None:
        config.stash.setdefault(REPORT_SECTIONS, {})["security"] = document


_WRITTEN = pytest.StashKey[tuple[str | None, str | None]]()


def summary_lines(results: Sequence[Combination]) -> list[str]:
    """One line per probed combination (``probe MODE BACKEND POLICY: N requests, M bypasses``), then the rest."""
    lines = [c.line for c in results if not c.unsupported and not c.problem]
    lines += [f"probe {c.mode} {c.backend} {c.policy}: unsupported ({c.unsupported})" for c in results
              if c.unsupported]  # fmt: skip
    lines += [f"probe {c.mode} {c.backend} {c.policy}: not probed ({c.problem})" for c in results if c.problem]
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.option.security:
        return
    probe = config.stash.get(_PROBE, None)
    terminalreporter.write_sep("=", "security qualification")
    if probe is not None:
        for line in summary_lines(probe.results):
            terminalreporter.write_line(line)
        requests = sum(c.requests for c in probe.results)
        seconds = sum(c.seconds for c in probe.results)
        if seconds:
            terminalreporter.write_line(f"probe total: {requests} requests in {seconds:.2f}s "
                                        f"({requests / seconds:.0f} requests/s), corpus seed {probe.corpus.seed}")
    else:
        settings: Settings | None = config.stash.get(SETTINGS, None)
        reason = unsupported_reason(settings) if settings else None
        terminalreporter.write_line(f"probe: not run ({reason or 'no probe test selected'})")
    path, error = config.stash.get(_WRITTEN, (None, None))
    if path:
        terminalreporter.write_line(f"security report: {path}")
    if error:
        terminalreporter.write_line(error, red=True)
