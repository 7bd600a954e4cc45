"""The suite's pytest plugin, loaded by ``suites/conftest.py`` (so active only for the conformance suites).

Parts: ``interrupts`` (Ctrl-C and SIGTERM: immediate cleanup, no traceback), ``options`` (command-line options
and Settings), ``mesh`` (session fixtures: keys, tokens, the mesh, the runner), ``scenarios`` (one test per
scenario case), ``report`` (the conformance report and summary; stale outputs removed at the start).
"""

pytest_plugins = [
    "meshjwt.pytest_plugin.interrupts",
    "meshjwt.pytest_plugin.options",
    "meshjwt.pytest_plugin.mesh",
    "meshjwt.pytest_plugin.scenarios",
    "meshjwt.pytest_plugin.report",
]
