"""The conformance suites (``test_conformance.py``) and the built-in scenarios (``scenarios/*.yaml``)."""
