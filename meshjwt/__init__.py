"""mesh-jwt-conformance: executable checks of JWT authentication in Istio-based meshes."""

__version__ = "0.1.0"
