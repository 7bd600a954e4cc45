"""The conformance suites load the suite's pytest plugin; ``pytest tests`` never does."""

pytest_plugins = ["meshjwt.pytest_plugin", "meshjwt.security.pytest_plugin"]
