"""Shared by the suite's own tests.

pytester runs the suites in process and afterwards drops every module the run imported; cryptography's Rust
bindings do not survive being imported twice ("curve must be an EllipticCurve instance"), so the suite's
machinery is imported once, here, before any in-process run.
"""

import meshjwt.keys  # noqa: F401
import meshjwt.pytest_plugin.mesh  # noqa: F401
import meshjwt.targets.local  # noqa: F401
