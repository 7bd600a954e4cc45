"""Scenarios as data: the records (model), reading and validating files (loader), running them (runner)."""
