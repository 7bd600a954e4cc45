"""Rehearsal of the kind/cluster targets against a simulated cluster; test support, never conformance evidence."""
