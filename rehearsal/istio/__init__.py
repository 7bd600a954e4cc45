"""The Istio side of the rehearsal: what ``istioctl install`` and the sidecar injector create, as data.

Seeded at run time from Istio's own golden outputs (``../shared/istio-golden/``, see :mod:`rehearsal.istio.golden`).
"""
