"""The conformance report: a versioned document built from a run's case results (``model``), written as
YAML and as a self-contained HTML page (``writers``)."""
