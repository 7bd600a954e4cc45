"""The only place the istioctl stand-in talks to a Kubernetes API: create-or-update and get, via the dynamic client."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


class KubeApi:
    """A kubeconfig's cluster through ``kubernetes.dynamic.DynamicClient`` (discovery cached in a private temp dir)."""

    def __init__(self, kubeconfig: str | None, context: str | None = None) -> None:
        from kubernetes import config, dynamic

        self._tmp = tempfile.TemporaryDirectory(prefix="meshjwt-istioctl-")
        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
            self._client = dynamic.DynamicClient(api_client, cache_file=str(Path(self._tmp.name) / "discovery.json"))
        except BaseException:
            self._tmp.cleanup()
            raise

    def close(self) -> None:
        """Forget the discovery cache."""
        self._tmp.cleanup()

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rediscover(self) -> None:
        """Drop cached discovery (after CRDs are created, as kubectl/istioctl do)."""
        self._client.resources.invalidate_cache()

    def _resource(self, api_version: str, kind: str) -> Any:
        return self._client.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any], *, update: bool = True) -> str:
        """Create ``obj`` (POST), or update it with a JSON merge patch (PATCH) unless ``update`` is False.

        Returns "created", "configured" or "unchanged".
        """
        from kubernetes.dynamic.exceptions import NotFoundError

        meta = obj["metadata"]
        resource = self._resource(obj["apiVersion"], obj["kind"])
        namespace = meta.get("namespace") if resource.namespaced else None
        try:
            resource.get(name=meta["name"], namespace=namespace)
        except NotFoundError:
            resource.create(body=obj, namespace=namespace)
            return "created"
        if not update:
            return "unchanged"
        resource.patch(body=obj, name=meta["name"], namespace=namespace, content_type="application/merge-patch+json")
        return "configured"

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
