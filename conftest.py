"""Repository-wide pytest configuration. The suite's own plugin is loaded by ``suites/conftest.py`` only."""

pytest_plugins: list[str] = []
