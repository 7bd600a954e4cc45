"""Kubernetes plumbing shared by the kind and cluster targets: binaries, plans, kubectl, workloads."""
