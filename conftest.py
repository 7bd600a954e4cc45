"""The suite's pytest configuration: everything lives in the ``fixtures`` plugins."""

pytest_plugins = ["fixtures.options", "fixtures.mesh", "fixtures.scenarios", "fixtures.report"]
pytest_plugins += ["meshjwt.security.pytest_plugin"]  # --security, --path-normalization (issue 9)
