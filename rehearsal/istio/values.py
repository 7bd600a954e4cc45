"""IstioOperator overlay (+ profile) → the settings the charts render with, the way istioctl resolves them.

Only what the rehearsal needs is resolved: hub/tag, revision, ``values.pilot.env``,
``values.pilot.jwksResolverExtraRootCA``, ``meshConfig`` and the gateway components. Anything that
changes what would be installed but is not modeled (another profile, an enabled egress gateway) is
refused with :class:`NotSimulated` rather than silently ignored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

#: hub stamped into Istio's released charts (the source tree's charts say registry.istio.io/testing).
DEFAULT_HUB = "docker.io/istio"
NAMESPACE = "istio-system"


class NotSimulated(ValueError):
    """An overlay asks for something this stand-in does not reproduce."""


#: What each supported profile changes (manifests/profiles/*.yaml + the charts' files/profile-*.yaml).
PROFILES: dict[str, dict[str, Any]] = {
    "default": {
        "egress": False,
        "pilot": {"autoscaleEnabled": True, "traceSampling": 1.0, "requests": {"cpu": "500m", "memory": "2048Mi"}},
        "gateway": {"autoscaleEnabled": True, "requests": {"cpu": "100m", "memory": "128Mi"}, "ports": None},
        "proxy_requests": {"cpu": "100m", "memory": "128Mi"},
        "meshConfig": {},
    },
    "demo": {
        "egress": True,
        "pilot": {"autoscaleEnabled": False, "traceSampling": 100, "requests": {"cpu": "10m", "memory": "100Mi"}},
        "gateway": {
            "autoscaleEnabled": False,
            "requests": {"cpu": "10m", "memory": "40Mi"},
            # demo's ingress ports replace the chart's list
            "ports": [
                {"port": 15021, "targetPort": 15021, "name": "status-port"},
                {"port": 80, "targetPort": 8080, "name": "http2"},
                {"port": 443, "targetPort": 8443, "name": "https"},
                {"port": 31400, "targetPort": 31400, "name": "tcp"},
                {"port": 15443, "targetPort": 15443, "name": "tls"},
            ],
        },
        "proxy_requests": {"cpu": "10m", "memory": "40Mi"},
        "meshConfig": {
            "accessLogFile": "/dev/stdout",
            "extensionProviders": [
                {
                    "name": "otel",
                    "envoyOtelAls": {
                        "service": "opentelemetry-collector.observability.svc.cluster.local",
                        "port": 4317,
                    },
                },
                {
                    "name": "skywalking",
                    "skywalking": {"service": "tracing.istio-system.svc.cluster.local", "port": 11800},
                },
                {
                    "name": "otel-tracing",
                    "opentelemetry": {
                        "port": 4317,
                        "service": "opentelemetry-collector.observability.svc.cluster.local",
                    },
                },
                {
                    "name": "jaeger",
                    "opentelemetry": {"port": 4317, "service": "jaeger-collector.istio-system.svc.cluster.local"},
                },
            ],
        },
    },
}

#: the istio-ingress chart's own ports (values.yaml), before a profile or k8s.service.ports replaces them.
CHART_GATEWAY_PORTS = [
    {"port": 15021, "targetPort": 15021, "name": "status-port", "protocol": "TCP"},
    {"port": 80, "targetPort": 8080, "name": "http2", "protocol": "TCP"},
    {"port": 443, "targetPort": 8443, "name": "https", "protocol": "TCP"},
]


@dataclass(frozen=True)
class GatewaySpec:
    """One enabled gateway component."""

    name: str
    namespace: str
    labels: dict[str, str]
    ports: list[dict[str, Any]]
    service_type: str = "LoadBalancer"
    service_patch: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstallValues:
    """What ``istioctl install`` renders with, resolved from profile + overlay."""

    version: str
    profile: str
    hub: str
    tag: str
    revision: str  # "" for the default revision
    pilot_env: dict[str, str]
    extra_root_ca: str
    mesh_config: dict[str, Any]
    ingress: tuple[GatewaySpec, ...]
    namespace: str = NAMESPACE

    @property
    def rev_label(self) -> str:
        """The ``istio.io/rev`` label value."""
        return self.revision or "default"

    @property
    def profile_values(self) -> dict[str, Any]:
        return PROFILES[self.profile]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge like Helm's mergeOverwrite: maps merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def go_string(value: Any) -> str:
    """How ``"{{ $val }}"`` prints a YAML scalar in a Helm template (``false``, ``100``, ``1``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _gateways(spec: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = (spec.get("components") or {}).get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise NotSimulated(f"spec.components.{key} must be a list")
    return [item for item in items if isinstance(item, dict)]


def resolve(overlay: dict[str, Any], version: str) -> InstallValues:
    """Resolve an IstioOperator overlay (``kind: IstioOperator``) for Istio ``version``."""
    if not isinstance(overlay, dict) or not isinstance(overlay.get("spec", {}), dict):
        raise NotSimulated("the overlay is not an IstioOperator (no spec mapping)")
    spec = overlay.get("spec") or {}
    values = spec.get("values") or {}
    profile = spec.get("profile") or values.get("profile") or "default"
    if profile not in PROFILES:
        raise NotSimulated(f"profile {profile!r} (simulated: {', '.join(sorted(PROFILES))})")
    glob = values.get("global") or {}
    pilot = values.get("pilot") or {}
    hub = spec.get("hub") or glob.get("hub") or DEFAULT_HUB
    tag = go_string(spec.get("tag") or glob.get("tag") or version)
    revision = str(spec.get("revision") or values.get("revision") or "")
    if revision == "default":
        revision = ""
    env = {str(k): go_string(v) for k, v in (pilot.get("env") or {}).items()}
    mesh_config = merge(PROFILES[profile]["meshConfig"], spec.get("meshConfig") or {})

    egress = _gateways(spec, "egressGateways")
    egress_on = (
        [g for g in egress if g.get("enabled", True)] if egress else ([{}] if PROFILES[profile]["egress"] else [])
    )
    if egress_on:
        raise NotSimulated("an enabled egress gateway: set components.egressGateways[].enabled: false")

    ingress: list[GatewaySpec] = []
    specs = _gateways(spec, "ingressGateways") or [{"name": "istio-ingressgateway", "enabled": True}]
    gateway_values = (values.get("gateways") or {}).get("istio-ingressgateway") or {}
    for item in specs:
        if not item.get("enabled", True):
            continue
        k8s = item.get("k8s") or {}
        service = dict(k8s.get("service") or {})
        ports = service.pop("ports", None) or gateway_values.get("ports")
        if not ports:
            ports = PROFILES[profile]["gateway"]["ports"] or CHART_GATEWAY_PORTS
        labels = {"app": "istio-ingressgateway", "istio": "ingressgateway", **(item.get("label") or {})}
        ingress.append(
            GatewaySpec(
                name=item.get("name") or "istio-ingressgateway",
                namespace=item.get("namespace") or NAMESPACE,
                labels=labels,
                ports=[dict(p) for p in ports],
                service_type=service.pop("type", None) or gateway_values.get("type") or "LoadBalancer",
                service_patch=service,
            )
        )
    return InstallValues(
        version=version,
        profile=profile,
        hub=str(hub).rstrip("/"),
        tag=tag,
        revision=revision,
        pilot_env=env,
        extra_root_ca=str(pilot.get("jwksResolverExtraRootCA") or ""),
        mesh_config=mesh_config,
        ingress=tuple(ingress),
    )
