"""Package data: the scenarios' Istio resources (``scenarios/``) and sample workloads (``workloads/``)."""
