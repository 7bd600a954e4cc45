"""Istio resources → Envoy configuration, following istiod."""
