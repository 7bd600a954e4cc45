"""The mutation harness: named deliberate bugs of the local reference mesh, and the runner that measures how
many of them the built-in suites catch (``tox -e mutants``; ``python -m mutants --help``). Not shipped."""
