"""The path-normalization probe (``--security``): one test per mode × backend × policy."""

from meshjwt.security.probe import MIN_REQUESTS
from meshjwt.security.pytest_plugin import cannot_run


def test_path_normalization_probe(probe_combination, security_probe, request):
    """Without a token, no corpus request gets the secret unless the mode's documented weakness explains it."""
    result = security_probe.run(*probe_combination)
    if result.unsupported:
        cannot_run(request.config, result.unsupported)
    assert result.problem is None, f"{result.line}: {result.problem}"
    assert result.requests >= min(MIN_REQUESTS, len(security_probe.corpus.paths)), (
        f"{result.line}: the time budget (--probe-max-seconds) ran out before {MIN_REQUESTS} requests"
    )
    unexplained = "; ".join(f"{b.request_line} → {b.status} (closed only by {b.closed_by})" for b in result.unexplained)
    assert not result.unexplained, f"{result.line}; not explained by {result.mode}: {unexplained}"
