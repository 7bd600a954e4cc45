"""What a running istiod would make of its own Deployment and ConfigMaps (read back, never assumed)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from rehearsal.istio.install import EXTRA_CA_KEY, EXTRA_CA_MOUNT

REMOTE_JWKS_ENV = "PILOT_JWT_ENABLE_REMOTE_JWKS"


@dataclass(frozen=True)
class IstiodSettings:
    """istiod's behaviour-relevant settings, as the objects in the cluster say."""

    version: str  # the pilot image tag
    hub: str
    revision: str  # "" for the default revision
    jwks_fetch_mode_env: str | None  # PILOT_JWT_ENABLE_REMOTE_JWKS as set (None: unset, istiod's default)
    extra_root_ca: str | None  # PEM istiod reads from /cacerts/extra.pem (None: nothing mounted there)
    extra_root_ca_configmap: str | None  # the ConfigMap mounted at /cacerts
    path_normalization: str | None  # meshConfig.pathNormalization.normalization (None: istiod's default)
    mesh_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: the injector's sidecar requests (istio-sidecar-injector ConfigMap, global.proxy.resources.requests)
    proxy_requests: dict[str, str] | None = None

    @property
    def jwks_fetch_mode(self) -> str:
        """The suite's name for the mode (istiod / hybrid / envoy), as meshjwt.kube.plans names it."""
        from meshjwt.kube.plans import fetch_mode_of

        return fetch_mode_of(self.jwks_fetch_mode_env)


def _by_name(configmaps: Iterable[dict[str, Any]] | dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    if isinstance(configmaps, dict):
        return dict(configmaps)
    return {cm["metadata"]["name"]: cm for cm in configmaps}


def _data(configmaps: dict[str, dict[str, Any]], name: str, key: str) -> str | None:
    return ((configmaps.get(name) or {}).get("data") or {}).get(key)


def istiod_settings(
    deployment: dict[str, Any], configmaps: Iterable[dict[str, Any]] | dict[str, dict[str, Any]] = ()
) -> IstiodSettings:
    """Settings of the istiod ``deployment`` (container ``discovery``), its CA and mesh from ``configmaps``.

    ``configmaps`` are the istio namespace's ConfigMaps (a list, or a name → object mapping); without
    them the CA and mesh config are None/empty.
    """
    pod = deployment["spec"]["template"]["spec"]
    try:
        container = next(c for c in pod["containers"] if c.get("name") == "discovery")
    except StopIteration:
        raise ValueError(f"Deployment {deployment['metadata'].get('name')} has no container 'discovery'") from None
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env", []) if "valueFrom" not in e}
    image = container.get("image", "")
    hub, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    revision = env.get("REVISION", "default")
    revision = "" if revision == "default" else revision
    cms = _by_name(configmaps)

    ca_configmap = ca = None
    mount = next((m for m in container.get("volumeMounts", []) if m.get("mountPath") == EXTRA_CA_MOUNT), None)
    if mount:
        volume = next((v for v in pod.get("volumes", []) if v.get("name") == mount.get("name")), {})
        ca_configmap = (volume.get("configMap") or {}).get("name")
        if ca_configmap in cms:
            ca = (cms[ca_configmap].get("data") or {}).get(EXTRA_CA_KEY)

    suffix = f"-{revision}" if revision else ""
    injector = json.loads(_data(cms, f"istio-sidecar-injector{suffix}", "values") or "{}")
    proxy = (injector.get("global") or {}).get("proxy") or {}
    mesh = yaml.safe_load(_data(cms, f"istio{suffix}", "mesh") or "") or {}
    return IstiodSettings(
        version=tag,
        hub=hub.rsplit("/", 1)[0],
        revision=revision,
        jwks_fetch_mode_env=env.get(REMOTE_JWKS_ENV),
        extra_root_ca=ca,
        extra_root_ca_configmap=ca_configmap,
        path_normalization=(mesh.get("pathNormalization") or {}).get("normalization"),
        mesh_config=mesh,
        env=env,
        proxy_requests=((proxy.get("resources") or {}).get("requests")) or None,
    )
