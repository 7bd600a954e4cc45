"""ServiceEntry and DestinationRule → Envoy clusters, as far as they matter for reaching a JWKS server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshjwt.errors import UnsupportedField
from meshjwt.localmesh.translate.selection import resource_id
from meshjwt.localmesh.world import World

SE_FIELDS = {"hosts", "ports", "location", "resolution", "endpoints", "exportTo"}
DR_FIELDS = {"host", "trafficPolicy", "exportTo", "workloadSelector"}
TLS_FIELDS = {"mode", "sni", "insecureSkipVerify", "subjectAltNames", "credentialName"}


def cluster_name(host: str, port: int) -> str:
    """Istio's outbound cluster name: ``outbound|PORT||HOST``."""
    return f"outbound|{port}||{host}"


def static_cluster(name: str, port: int | None, timeout: str = "5s") -> dict[str, Any]:
    """A STATIC cluster with one loopback endpoint, or none (nothing resolves: every request fails)."""
    endpoints = []
    if port is not None:
        endpoints = [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {
            "address": "127.0.0.1", "portValue": port}}}}]}]  # fmt: skip
    return {"name": name, "type": "STATIC", "connectTimeout": timeout,
            "loadAssignment": {"clusterName": name, "endpoints": endpoints}}  # fmt: skip


def _check(resource: Mapping[str, Any], allowed: set[str], what: str, fields: Mapping[str, Any]) -> None:
    for key in fields:
        if key not in allowed:
            raise UnsupportedField(f"{resource_id(resource)}: {what}.{key} is not supported by the local mesh")


def _tls_for(host: str, port: int, rules: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The DestinationRule TLS settings for ``host:port`` (port-level settings win)."""
    for dr in rules:
        spec = dr.get("spec") or {}
        if spec.get("host") != host:
            continue
        policy = spec.get("trafficPolicy") or {}
        for level in policy.get("portLevelSettings") or []:
            _check(dr, {"port", "tls"}, "spec.trafficPolicy.portLevelSettings[]", level)
            if (level.get("port") or {}).get("number") == port and "tls" in level:
                return level["tls"]
        if "tls" in policy:
            return policy["tls"]
    return None


def _transport_socket(
    dr_id: str, host: str, tls: Mapping[str, Any], ca_file: str, secrets: Mapping[str, str]
) -> dict[str, Any] | None:
    mode = tls.get("mode", "DISABLE")
    if mode == "DISABLE":
        return None
    if mode != "SIMPLE":
        raise UnsupportedField(f"{dr_id}: tls.mode {mode} is not supported by the local mesh (SIMPLE or DISABLE)")
    common: dict[str, Any] = {}
    if tls.get("credentialName"):
        if tls["credentialName"] not in secrets:
            raise UnsupportedField(
                f"{dr_id}: tls.credentialName {tls['credentialName']!r} names a Secret the local mesh does not "
                f"have (it has: {', '.join(sorted(secrets)) or 'none'})"
            )
        ca_file = secrets[tls["credentialName"]]
    if not tls.get("insecureSkipVerify"):
        sans = tls.get("subjectAltNames") or [host]
        common["validationContext"] = {
            # the Secret's CA, else the local world's system roots (the run's CA)
            "trustedCa": {"filename": ca_file},
            "matchTypedSubjectAltNames": [{"sanType": "DNS", "matcher": {"exact": san}} for san in sans],
        }
    return {
        "name": "envoy.transport_sockets.tls",
        "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls.get("sni") or host,
            "commonTlsContext": common,
        },
    }


def service_entry_clusters(
    service_entries: Sequence[Mapping[str, Any]],
    destination_rules: Sequence[Mapping[str, Any]],
    world: World,
    ca_file: str,
    secrets: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One cluster per ServiceEntry host and port, with TLS origination when a DestinationRule asks.

    ``secrets`` maps Secret names (for ``credentialName``) to CA files. A DestinationRule's
    ``workloadSelector`` is accepted: the local mesh's proxies share one Envoy, so it applies to all of them.
    """
    for dr in destination_rules:  # every DestinationRule is checked, whether a ServiceEntry uses it or not
        spec = dr.get("spec") or {}
        _check(dr, DR_FIELDS, "spec", spec)
        policy = spec.get("trafficPolicy") or {}
        _check(dr, {"tls", "portLevelSettings"}, "spec.trafficPolicy", policy)
        for tls in [policy.get("tls"), *((level or {}).get("tls") for level in policy.get("portLevelSettings") or [])]:
            if tls:
                _check(dr, TLS_FIELDS, "spec.trafficPolicy.tls", tls)
    clusters: list[dict[str, Any]] = []
    for se in service_entries:
        spec = se.get("spec") or {}
        _check(se, SE_FIELDS, "spec", spec)
        for host in spec.get("hosts") or []:
            for port_spec in spec.get("ports") or []:
                port = int(port_spec["number"])
                # endpoints/resolution are honoured by name: the local world routes the host itself.
                cluster = static_cluster(cluster_name(host, port), world.resolve(host, port, "istio-system"))
                tls = _tls_for(host, port, destination_rules)
                if tls:
                    socket = _transport_socket(resource_id(se), host, tls, ca_file, secrets or {})
                    if socket:
                        cluster["transportSocket"] = socket
                clusters.append(cluster)
    return clusters
