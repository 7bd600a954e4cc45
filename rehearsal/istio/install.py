"""Every object ``istioctl install -f OVERLAY`` puts in the cluster, in apply order, seeded from Istio's golden output.

The control plane is ``install/pilot_default.golden.yaml`` (Istio's manifest-generate output for
``profile: empty`` + pilot, hub ``registry.istio.io/release``, tag ``1.1.4``, ``meshConfig.rootNamespace:
istio-control``) with what differs for our install applied the way the istiod chart does it
(``manifests/charts/istio-control/istio-discovery/templates/``):

- image ``<hub>/pilot:<tag>``; ``values.pilot.env`` → container env, sorted by key, after
  ``CA_TRUSTED_NODE_ACCOUNTS`` (deployment.yaml ranges over the map);
- ``values.pilot.jwksResolverExtraRootCA`` → ConfigMap ``pilot-jwks-extra-cacerts[-REV]`` key ``extra.pem``
  (configmap-jwks.yaml), volume ``extracacerts`` mounted at ``/cacerts``, which istiod reads as
  ``/cacerts/extra.pem`` (pilot/pkg/model/jwks_resolver.go ``jwksExtraRootCABundlePath``);
- ``meshConfig`` merged into the ``istio[-REV]`` ConfigMap's ``mesh`` (configmap.yaml: mergeOverwrite,
  printed with toYaml), rootNamespace back to the chart default (the istio namespace);
- ``spec.revision`` → ``-REV`` names (istiod-REV, istio-REV, istio-sidecar-injector-REV, …),
  ``istio.io/rev: REV`` labels, revision-only injection webhooks;
- profile values (demo: one replica and no HPA, traceSampling 100, small requests).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from rehearsal.istio import golden
from rehearsal.istio.crds import istio_crds
from rehearsal.istio.gateway import chart_version, gateway_objects
from rehearsal.istio.values import InstallValues, go_string, merge, resolve

PILOT_GOLDEN = "install/pilot_default.golden.yaml"
GOLDEN_CHART_VERSION = "1.0.0"
EXTRA_CA_CONFIGMAP = "pilot-jwks-extra-cacerts"
EXTRA_CA_KEY = "extra.pem"
EXTRA_CA_MOUNT = "/cacerts"


def install_components(overlay: dict[str, Any], version: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(component, objects) in istioctl's order: "Istio core", "Istiod", "Ingress gateways".

    The istio namespace comes first: istioctl creates it (if absent) before applying any manifest
    (operator/pkg/install/install.go ``installSystemNamespace``); then the base chart's CRDs.
    """
    vals = resolve(overlay, version)
    components = [
        ("Istio core", [namespace(vals), *istio_crds(), reader_service_account(vals)]),
        ("Istiod", control_plane(vals)),
    ]
    if vals.ingress:
        components.append(("Ingress gateways", gateway_objects(vals)))
    return components


def install_objects(overlay: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """CRDs, the istio namespace, the control plane and the ingress gateway(s) for this overlay, in apply order."""
    return [obj for _, objects in install_components(overlay, version) for obj in objects]


def namespace(vals: InstallValues) -> dict[str, Any]:
    """The istio namespace, as istioctl creates it when absent (no labels without a network)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": vals.namespace}}


def reader_service_account(vals: InstallValues) -> dict[str, Any]:
    """The base chart's reader ServiceAccount (the reader ClusterRoleBinding names it)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "istio-reader-service-account",
            "namespace": vals.namespace,
            "labels": {"app": "istio-reader", "release": "istio"},
        },
    }


def rev_name(name: str, vals: InstallValues) -> str:
    """``istiod`` → ``istiod-REV``; ``istiod-clusterrole-istio-system`` → ``istiod-clusterrole-REV-istio-system``."""
    if not vals.revision:
        return name
    suffix = f"-{vals.namespace}"
    if name.endswith(suffix):
        return f"{name[: -len(suffix)]}-{vals.revision}{suffix}"
    return f"{name}-{vals.revision}"


def _relabel(labels: dict[str, Any] | None, vals: InstallValues) -> None:
    if not labels:
        return
    version = chart_version(vals.version)
    if labels.get("app.kubernetes.io/version") == GOLDEN_CHART_VERSION:
        labels["app.kubernetes.io/version"] = version
    if str(labels.get("helm.sh/chart", "")).endswith(f"-{GOLDEN_CHART_VERSION}"):
        labels["helm.sh/chart"] = labels["helm.sh/chart"].rsplit("-", 1)[0] + f"-{version}"
    if labels.get("istio.io/rev") == "default":
        labels["istio.io/rev"] = vals.rev_label


def _rev_selectors(obj: Any, vals: InstallValues) -> None:
    """Webhook selectors ``istio.io/rev In [default]`` → ``[REV]``; service refs to istiod → istiod-REV."""
    if isinstance(obj, dict):
        if obj.get("key") == "istio.io/rev" and obj.get("values") == ["default"]:
            obj["values"] = [vals.rev_label]
        service = obj.get("service")
        if isinstance(service, dict) and service.get("name") == "istiod":
            service["name"] = rev_name("istiod", vals)
        for value in obj.values():
            _rev_selectors(value, vals)
    elif isinstance(obj, list):
        for value in obj:
            _rev_selectors(value, vals)


def mesh_config(golden_mesh: str, vals: InstallValues) -> str:
    """The ``mesh`` key of the istio ConfigMap: chart defaults merged with the profile's and overlay's meshConfig."""
    mesh = yaml.safe_load(golden_mesh) or {}
    mesh["rootNamespace"] = vals.namespace  # the golden run set istio-control; the chart default is the namespace
    mesh.setdefault("defaultConfig", {})["discoveryAddress"] = f"{rev_name('istiod', vals)}.{vals.namespace}.svc:15012"
    return yaml.safe_dump(merge(mesh, vals.mesh_config), sort_keys=True, default_flow_style=False).rstrip("\n")


def _pilot_env(env: list[dict[str, Any]], vals: InstallValues) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    extra = [{"name": k, "value": vals.pilot_env[k]} for k in sorted(vals.pilot_env)]
    anchor = "CA_TRUSTED_NODE_ACCOUNTS"
    for item in env:
        name = item.get("name")
        if name == anchor and anchor in vals.pilot_env:
            continue  # the chart leaves its default out when the user sets it
        if name == "REVISION":
            item = {"name": name, "value": vals.rev_label}
        if name == "PILOT_TRACE_SAMPLING":
            item = {"name": name, "value": go_string(vals.profile_values["pilot"]["traceSampling"])}
        out.append(item)
        if name == anchor:
            out += extra
            extra = []
    return out + extra


def _deployment(obj: dict[str, Any], vals: InstallValues) -> None:
    pilot = vals.profile_values["pilot"]
    spec = obj["spec"]
    if not pilot["autoscaleEnabled"]:
        spec["replicas"] = 1
    pod = spec["template"]
    if vals.revision:
        spec["selector"]["matchLabels"] = {"app": "istiod", "istio.io/rev": vals.revision}
        pod["metadata"]["labels"]["istio"] = "istiod"
        pod["spec"]["serviceAccountName"] = rev_name("istiod", vals)
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "discovery")
    container["image"] = f"{vals.hub}/pilot:{vals.tag}"
    container["env"] = _pilot_env(container.get("env", []), vals)
    container["resources"] = {"requests": dict(pilot["requests"])}
    if vals.extra_root_ca:
        mounts = container.setdefault("volumeMounts", [])
        at = next((i + 1 for i, m in enumerate(mounts) if m.get("name") == "istio-kubeconfig"), len(mounts))
        mounts.insert(at, {"name": "extracacerts", "mountPath": EXTRA_CA_MOUNT})
        pod["spec"].setdefault("volumes", []).append(
            {"name": "extracacerts", "configMap": {"name": rev_name(EXTRA_CA_CONFIGMAP, vals)}}
        )


def _extra_ca_configmap(vals: InstallValues) -> dict[str, Any]:
    version = chart_version(vals.version)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": rev_name(EXTRA_CA_CONFIGMAP, vals),
            "namespace": vals.namespace,
            "labels": {
                "release": "istio",
                "istio.io/rev": vals.rev_label,
                "install.operator.istio.io/owning-resource": "unknown",
                "operator.istio.io/component": "Pilot",
                "app.kubernetes.io/name": "istiod",
                "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/instance": "istio",
                "app.kubernetes.io/part-of": "istio",
                "app.kubernetes.io/version": version,
                "helm.sh/chart": f"istiod-{version}",
            },
        },
        "data": {EXTRA_CA_KEY: vals.extra_root_ca},
    }


def _injector_values(text: str, vals: InstallValues) -> str:
    data = json.loads(text)
    data.setdefault("global", {}).update(hub=vals.hub, tag=vals.tag)
    data["revision"] = vals.revision
    proxy = data["global"].setdefault("proxy", {})
    proxy["resources"] = merge(proxy.get("resources") or {}, {"requests": vals.profile_values["proxy_requests"]})
    return json.dumps(data, indent=2, sort_keys=True)


def _chart_values(text: str, vals: InstallValues, *, original: bool) -> str:
    """The ``values`` ConfigMap's JSON (merged-values / original-values) with this install's settings."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    data.setdefault("global", {}).update(hub=vals.hub, tag=vals.tag)
    pilot = {"env": dict(vals.pilot_env), "jwksResolverExtraRootCA": vals.extra_root_ca}
    if original:  # what istioctl handed the chart: values under pilot, meshConfig as given
        data["pilot"] = {**data.get("pilot", {}), **{k: v for k, v in pilot.items() if v}}
        data["meshConfig"] = vals.mesh_config
        data["profile"] = vals.profile
        if vals.revision:
            data["revision"] = vals.revision
    else:  # after zzy_descope_legacy.yaml copied pilot.* to the top
        data.update(revision=vals.revision, **pilot)
    return json.dumps(data, indent=2, sort_keys=True)


def control_plane(vals: InstallValues) -> list[dict[str, Any]]:
    """The golden control plane with this install's hub/tag, env, CA, meshConfig, revision and profile."""
    out: list[dict[str, Any]] = []
    for source in golden.load_all(PILOT_GOLDEN):
        obj = copy.deepcopy(source)
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "HorizontalPodAutoscaler" and not vals.profile_values["pilot"]["autoscaleEnabled"]:
            continue
        meta["name"] = rev_name(meta["name"], vals)
        if "namespace" in meta:
            meta["namespace"] = vals.namespace
        _relabel(meta.get("labels"), vals)
        for ref in [obj.get("roleRef"), *obj.get("subjects", [])]:
            if isinstance(ref, dict) and ref.get("name") and ref.get("kind") != "ServiceAccount":
                ref["name"] = rev_name(ref["name"], vals)
            elif isinstance(ref, dict) and ref.get("name") == "istiod":
                ref["name"] = rev_name("istiod", vals)
        if kind == "Deployment":
            _relabel(obj["spec"]["template"]["metadata"].get("labels"), vals)
            _deployment(obj, vals)
        elif kind == "Service" and vals.revision:
            obj["spec"]["selector"] = {"app": "istiod", "istio.io/rev": vals.revision}
        elif kind == "HorizontalPodAutoscaler":
            obj["spec"]["scaleTargetRef"]["name"] = rev_name("istiod", vals)
        elif kind == "MutatingWebhookConfiguration" and vals.revision:
            obj["webhooks"] = [w for w in obj.get("webhooks", []) if str(w.get("name", "")).startswith("rev.")]
        if kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            _rev_selectors(obj.get("webhooks"), vals)
        if kind == "ConfigMap":
            data = obj.setdefault("data", {})
            if source["metadata"]["name"] == "istio":
                data["mesh"] = mesh_config(data.get("mesh", ""), vals)
            elif source["metadata"]["name"] == "istio-sidecar-injector" and "values" in data:
                data["values"] = _injector_values(data["values"], vals)
            elif source["metadata"]["name"] == "values":
                for key in ("merged-values", "original-values"):
                    if key in data:
                        data[key] = _chart_values(data[key], vals, original=key == "original-values")
        out.append(obj)
        if kind == "ConfigMap" and source["metadata"]["name"] == "istio" and vals.extra_root_ca:
            out.append(_extra_ca_configmap(vals))
    return out
