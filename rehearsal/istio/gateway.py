"""The ingress gateway as ``istioctl install`` renders it: Istio's own Deployment template, rendered by Helm.

The template is ``install/istio-ingress-deployment.template.yaml`` of the golden folder (Istio's
``manifests/charts/gateways/istio-ingress/templates/deployment.yaml``), rendered at run time with Helm's
engine (PyPI ``helm-python-sdk``) and the values the chosen profile + overlay give it. The chart's
helper templates are not in the golden folder; the few it includes are defined below with the output
they have for these values. The Service, ServiceAccount and SDS Role/RoleBinding follow the chart's
service.yaml, serviceaccount.yaml, role.yaml and rolebindings.yaml (no PodDisruptionBudget: one replica).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from rehearsal.istio import golden
from rehearsal.istio.values import GatewaySpec, InstallValues, merge

TEMPLATE = "install/istio-ingress-deployment.template.yaml"

# Helpers the template includes (the chart's _helpers.tpl, _affinity.tpl, zzz_profile.yaml), reduced to
# what they print when no arch, node selector or anti-affinity is configured.
HELPERS = """\
{{- define "istio.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/part-of: "istio"
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- define "nodeaffinity" }}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
  preferredDuringSchedulingIgnoredDuringExecution:
{{- end }}
{{- define "podAntiAffinity" }}
{{- end }}
{{- define "istio-ingress.resources" -}}
{{ toYaml . }}
{{- end -}}
"""


class HelmUnavailable(RuntimeError):
    """helm-python-sdk (the ``rehearsal`` extra) is not installed."""


def chart_version(version: str) -> str:
    """A SemVer chart version for Istio ``1.29`` / ``1.29.2``."""
    parts = version.removeprefix("v").split(".")
    return ".".join((parts + ["0", "0"])[:3]) if len(parts) < 3 else version.removeprefix("v")


def chart_values(vals: InstallValues, gateway: GatewaySpec) -> dict[str, Any]:
    """The Helm values of the istio-ingress chart: its defaults, the profile, the overlay."""
    profile = vals.profile_values["gateway"]
    return {
        "gateways": {
            "istio-ingressgateway": {
                "name": gateway.name,
                "labels": dict(gateway.labels),
                "ports": [dict(p) for p in gateway.ports],
                "injectionTemplate": "",
                "autoscaleEnabled": profile["autoscaleEnabled"],
                "replicaCount": 1,
                "rollingMaxSurge": "100%",
                "rollingMaxUnavailable": "25%",
                "runAsRoot": False,
                "resources": {"requests": dict(profile["requests"]), "limits": {"cpu": "2000m", "memory": "1024Mi"}},
                "env": {},
                "podAnnotations": {},
                "nodeSelector": {},
                "tolerations": [],
                "additionalContainers": [],
                "secretVolumes": [
                    {
                        "name": "ingressgateway-certs",
                        "secretName": "istio-ingressgateway-certs",
                        "mountPath": "/etc/istio/ingressgateway-certs",
                    },
                    {
                        "name": "ingressgateway-ca-certs",
                        "secretName": "istio-ingressgateway-ca-certs",
                        "mountPath": "/etc/istio/ingressgateway-ca-certs",
                    },
                ],
                "configVolumes": [],
                "podAntiAffinityLabelSelector": [],
                "podAntiAffinityTermLabelSelector": [],
            }
        },
        "revision": vals.revision,
        "ownerName": "",
        "platform": "",
        "pilot": {"env": dict(vals.pilot_env)},
        "global": {
            "hub": vals.hub,
            "tag": vals.tag,
            "variant": "",
            "imagePullPolicy": "",
            "logAsJson": False,
            "arch": {},
            "logging": {"level": "default:info"},
            "priorityClassName": "",
            "proxy": {
                "image": "proxyv2",
                "clusterDomain": "cluster.local",
                "componentLogLevel": "misc:error",
                "logLevel": "warning",
            },
            "caAddress": "",
            "istioNamespace": vals.namespace,
            "meshID": "",
            "mountMtlsCerts": False,
            "multiCluster": {"clusterName": ""},
            "network": "",
            "pilotCertProvider": "istiod",
            "sds": {"token": {"aud": "istio-ca"}},
            "sts": {"servicePort": 0},
            "defaultResources": {"requests": {"cpu": "10m"}},
            "defaultNodeSelector": {},
            "defaultTolerations": [],
            "platform": "",
        },
        "meshConfig": merge(
            {"enablePrometheusMerge": True, "trustDomain": "cluster.local", "defaultConfig": {"proxyMetadata": {}}},
            vals.mesh_config,
        ),
    }


def render_deployment(vals: InstallValues, gateway: GatewaySpec) -> dict[str, Any]:
    """The gateway Deployment: Istio's template rendered by Helm with these values."""
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HelmUnavailable(
            "rendering the gateway template needs helm-python-sdk: pip install -e '.[rehearsal]'"
        ) from exc
    template = golden.read_text(TEMPLATE)
    with tempfile.TemporaryDirectory(prefix="meshjwt-istio-ingress-") as tmp:
        root = Path(tmp)
        (root / "templates").mkdir()
        version = chart_version(vals.version)
        (root / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": "istio-ingress", "version": version, "appVersion": version})
        )
        (root / "templates" / "deployment.yaml").write_text(template)
        (root / "templates" / "_helpers.tpl").write_text(HELPERS)
        with helm_python.Chart.load(str(root)) as chart:
            rendered = chart.render(chart_values(vals, gateway), name="istio", namespace=gateway.namespace)
    docs = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise RuntimeError(f"the gateway template rendered {len(deployments)} Deployments, expected 1")
    return deployments[0]


def common_labels(vals: InstallValues, gateway: GatewaySpec) -> dict[str, str]:
    version = chart_version(vals.version)
    return {
        **gateway.labels,
        "release": "istio",
        "istio.io/rev": vals.rev_label,
        "install.operator.istio.io/owning-resource": "unknown",
        "operator.istio.io/component": "IngressGateways",
        "app.kubernetes.io/name": "istio-ingressgateway",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/instance": "istio",
        "app.kubernetes.io/part-of": "istio",
        "app.kubernetes.io/version": version,
        "helm.sh/chart": f"istio-ingress-{version}",
    }


def service(vals: InstallValues, gateway: GatewaySpec) -> dict[str, Any]:
    """The gateway Service (chart service.yaml; type and extra fields from ``k8s.service``)."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": gateway.name,
            "namespace": gateway.namespace,
            "labels": common_labels(vals, gateway),
        },
        "spec": {
            "type": gateway.service_type,
            "selector": dict(gateway.labels),
            "ports": [dict(p) for p in gateway.ports],
        },
    }
    if gateway.service_patch:
        obj["spec"] = merge(obj["spec"], gateway.service_patch)
    return obj


def service_account(vals: InstallValues, gateway: GatewaySpec) -> dict[str, Any]:
    """The gateway's ServiceAccount (``<name>-service-account``, chart serviceaccount.yaml)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": f"{gateway.name}-service-account",
            "namespace": gateway.namespace,
            "labels": common_labels(vals, gateway),
        },
    }


def sds_rbac(vals: InstallValues, gateway: GatewaySpec) -> list[dict[str, Any]]:
    """Role and RoleBinding ``<name>-sds`` letting the gateway read secrets (chart role.yaml, rolebindings.yaml)."""
    labels = {k: v for k, v in common_labels(vals, gateway).items() if k not in gateway.labels}
    meta = {"name": f"{gateway.name}-sds", "namespace": gateway.namespace, "labels": labels}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(meta),
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{gateway.name}-sds"},
            "subjects": [{"kind": "ServiceAccount", "name": f"{gateway.name}-service-account"}],
        },
    ]


def gateway_objects(vals: InstallValues) -> list[dict[str, Any]]:
    """ServiceAccount, SDS Role/RoleBinding, Deployment and Service of every enabled ingress gateway."""
    out: list[dict[str, Any]] = []
    for gateway in vals.ingress:
        out += [
            service_account(vals, gateway),
            *sds_rbac(vals, gateway),
            render_deployment(vals, gateway),
            service(vals, gateway),
        ]
    return out
