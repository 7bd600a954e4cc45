"""The local reference mesh: a real Envoy configured from Istio YAML the way istiod configures Istio's proxy."""
