"""Istio's sidecar injector as data: the pod the webhook returns, seeded from the golden ``inject/*.injected`` files.

The injected containers, volumes, labels and annotations are taken at run time from Istio's own
injector outputs (``inject/hello.yaml.injected`` for sidecars, ``inject/gateway.yaml.injected`` for pods
asking for ``inject.istio.io/templates: gateway``) and adapted to the pod: its ports, app containers,
workload/owner, HTTP probes (rewritten to the agent, ``ISTIO_KUBE_APP_PROBERS``), revision, hub and tag.

Native sidecars (``istio-proxy`` in ``initContainers`` with ``restartPolicy: Always``) are the default
from Istio 1.27: release note ``releasenotes/notes/native-sidecar-default.yaml`` ("Promoted the environment
variable ENABLE_NATIVE_SIDECARS to default to true", istio/istio#56428, backported to release-1.27 in
#56918), where the default ``auto`` turns them on when the kubelet is 1.33 or newer
(``pkg/kube/inject/webhook.go`` ``DetectNativeSidecar``). Before 1.27 the classic form (``istio-proxy`` last in
``containers``) is injected. Both golden files above are in the native form; the classic form moves
the proxy as Istio's template does (``{{ if not $nativeSidecar }}containers:{{ end }}``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from rehearsal.istio import golden
from rehearsal.istio.values import DEFAULT_HUB, NAMESPACE

SIDECAR_GOLDEN = "inject/hello.yaml.injected"
GATEWAY_GOLDEN = "inject/gateway.yaml.injected"
PROXY = "istio-proxy"
INIT = "istio-init"
STATUS = "sidecar.istio.io/status"
#: first Istio minor whose default (ENABLE_NATIVE_SIDECARS=auto) injects native sidecars
NATIVE_SIDECARS_SINCE = (1, 27)
#: ... on kubelets of this minor or newer (Kubernetes 1.33: native sidecars stable)
NATIVE_SIDECARS_MIN_KUBELET = 33
#: namespaces the injector never touches (pkg/kube/inject: IgnoredNamespaces)
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
AGENT_PORT = 15020
#: field order of a Kubernetes Container as Go marshals it (for the overrides annotation)
CONTAINER_FIELDS = [
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
]


def _minor(version: str) -> tuple[int, int]:
    """``1.29.2`` → (1, 29); a tag that is not a release (``latest``, ``master``) counts as the newest."""
    parts = version.removeprefix("v").split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return (10**6, 0)
    return int(parts[0]), int(parts[1])


def native_sidecars_default(version: str, kubelet_minor: int = NATIVE_SIDECARS_MIN_KUBELET) -> bool:
    """Whether Istio ``version`` injects native sidecars by default on a kubelet of ``1.<kubelet_minor>``."""
    return _minor(version) >= NATIVE_SIDECARS_SINCE and kubelet_minor >= NATIVE_SIDECARS_MIN_KUBELET


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def selected(pod: dict[str, Any], namespace: dict[str, Any], revision: str | None = None) -> bool:
    """Whether the injection webhooks of ``revision`` (None/"" = default) select this pod (golden MutatingWebhook)."""
    rev = revision or "default"
    ns_labels = _meta(namespace).get("labels") or {}
    pod_meta = _meta(pod.get("spec", {}).get("template", pod)) if "template" in pod.get("spec", {}) else _meta(pod)
    labels = pod_meta.get("labels") or {}
    annotations = pod_meta.get("annotations") or {}
    ns_name = _meta(namespace).get("name") or _meta(pod).get("namespace")
    if ns_name in IGNORED_NAMESPACES:
        return False
    flag = labels.get("sidecar.istio.io/inject", annotations.get("sidecar.istio.io/inject"))
    if str(flag).lower() == "false":
        return False
    ns_injection = ns_labels.get("istio-injection")
    ns_rev = ns_labels.get("istio.io/rev")
    if ns_injection is not None:  # namespace.sidecar-injector: the default revision only
        return ns_injection == "enabled" and rev == "default"
    if ns_rev is not None:  # rev.namespace
        return ns_rev == rev
    if "istio.io/rev" in labels:  # rev.object
        return labels["istio.io/rev"] == rev
    return rev == "default" and str(flag).lower() == "true"  # object.sidecar-injector


def _has_proxy(spec: dict[str, Any]) -> bool:
    return any(c.get("name") == PROXY for c in [*spec.get("containers", []), *spec.get("initContainers", [])])


def _golden_pod(relative: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod template metadata, pod spec) of a golden injected Deployment or Pod."""
    doc = golden.load_all(relative)[0]
    pod = doc["spec"]["template"] if "template" in doc.get("spec", {}) else doc
    return pod["metadata"], pod["spec"]


def _pod_ports(containers: list[dict[str, Any]]) -> str:
    order = ("name", "hostPort", "containerPort", "protocol", "hostIP")
    ports = [
        json.dumps({k: p[k] for k in order if k in p}, separators=(",", ":"))
        for c in containers
        for p in c.get("ports", [])
    ]
    return "[\n" + "".join(f"    {p}{',' if i < len(ports) - 1 else ''}\n" for i, p in enumerate(ports)) + "]"


def _rewrite_probes(containers: list[dict[str, Any]]) -> dict[str, Any]:
    """Point app HTTP probes at the agent (rewriteAppHTTPProbe); return ISTIO_KUBE_APP_PROBERS entries."""
    probers: dict[str, Any] = {}
    for container in containers:
        for field, suffix in (("readinessProbe", "readyz"), ("livenessProbe", "livez"), ("startupProbe", "startupz")):
            probe = container.get(field)
            if not isinstance(probe, dict) or "httpGet" not in probe:
                continue
            path = f"/app-health/{container['name']}/{suffix}"
            original: dict[str, Any] = {"httpGet": probe["httpGet"]}
            if "timeoutSeconds" in probe:
                original["timeoutSeconds"] = probe["timeoutSeconds"]
            probers[path] = original
            probe["httpGet"] = {"path": path, "port": AGENT_PORT}
    return probers


def _workload(obj: dict[str, Any], namespace: str) -> tuple[str, str]:
    """(workload name, ISTIO_META_OWNER) of a Deployment, or of a Pod (through its ReplicaSet)."""
    meta = _meta(obj)
    name = meta.get("name") or meta.get("generateName", "").rstrip("-")
    if obj.get("kind") == "Deployment":
        return name, f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    for ref in meta.get("ownerReferences") or []:
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if ref.get("kind") == "ReplicaSet" and template_hash and ref["name"].endswith(f"-{template_hash}"):
            deployment = ref["name"][: -len(template_hash) - 1]
            return deployment, f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"
    return name, f"kubernetes://apis/v1/namespaces/{namespace}/pods/{name}"


def _field_rank(name: str) -> int:
    return CONTAINER_FIELDS.index(name) if name in CONTAINER_FIELDS else len(CONTAINER_FIELDS)


def _set_env(env: list[dict[str, Any]], name: str, value: str) -> None:
    for item in env:
        if item.get("name") == name:
            item.pop("valueFrom", None)
            if value:
                item["value"] = value
            else:
                item.pop("value", None)
            return
    env.append({"name": name, "value": value})


def inject(
    pod: dict[str, Any],
    namespace: dict[str, Any],
    *,
    version: str,
    revision: str | None = None,
    hub: str = DEFAULT_HUB,
    native: bool | None = None,
    istio_namespace: str = NAMESPACE,
    proxy_requests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The pod (or a Deployment's pod template) as Istio's injector returns it; unchanged when not selected.

    ``native`` None means Istio ``version``'s default (see :func:`native_sidecars_default`);
    ``proxy_requests`` the injector's ``global.proxy.resources.requests`` (None: the golden's, Istio's defaults).
    """
    out = copy.deepcopy(pod)
    is_workload = "template" in out.get("spec", {})
    target = out["spec"]["template"] if is_workload else out
    spec = target.setdefault("spec", {})
    meta = target.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    gateway = annotations.get("inject.istio.io/templates") == "gateway"
    already = STATUS in annotations or (_has_proxy(spec) and not gateway)
    if spec.get("hostNetwork") or already or not selected(pod, namespace, revision):
        return out
    annotations = meta.setdefault("annotations", {})
    labels = meta.setdefault("labels", {})
    ns_name = _meta(namespace).get("name") or _meta(pod).get("namespace") or "default"
    rev = revision or "default"
    image = f"{hub.rstrip('/')}/proxyv2:{version}"
    workload, owner = _workload(out, ns_name)
    ca_addr = f"istiod{'-' + revision if revision and revision != 'default' else ''}.{istio_namespace}.svc:15012"
    golden_meta, golden_spec = _golden_pod(GATEWAY_GOLDEN if gateway else SIDECAR_GOLDEN)
    status = json.loads(golden_meta["annotations"][STATUS])
    injected_volumes = [v for v in golden_spec.get("volumes", []) if v["name"] in status["volumes"]]

    app = [c for c in spec.get("containers", []) if c.get("name") != PROXY]
    for container in [*app, *spec.get("initContainers", [])]:
        container.setdefault("resources", {})
    proxy = copy.deepcopy(
        next(
            c
            for c in [*golden_spec.get("containers", []), *golden_spec.get("initContainers", [])]
            if c["name"] == PROXY
        )
    )
    proxy["image"] = image
    env = proxy.setdefault("env", [])
    _set_env(env, "CA_ADDR", ca_addr)
    _set_env(env, "ISTIO_META_POD_PORTS", _pod_ports(app))
    _set_env(env, "ISTIO_META_APP_CONTAINERS", ",".join(c["name"] for c in app))
    _set_env(env, "ISTIO_META_WORKLOAD_NAME", workload)
    _set_env(env, "ISTIO_META_OWNER", owner)
    probers = _rewrite_probes([*spec.get("initContainers", []), *app])
    if probers:
        _set_env(env, "ISTIO_KUBE_APP_PROBERS", json.dumps(dict(sorted(probers.items())), separators=(",", ":")))

    if gateway:
        user = next((c for c in spec.get("containers", []) if c.get("name") == PROXY), {"name": PROXY})
        overrides = {k: v for k, v in user.items() if k != "image"}
        overrides.setdefault("resources", {})
        merged = {**proxy, **overrides}
        spec["containers"] = [merged]
        ordered = sorted(overrides.items(), key=lambda kv: _field_rank(kv[0]))
        annotations["proxy.istio.io/overrides"] = json.dumps({"containers": [dict(ordered)]}, separators=(",", ":"))
        if "securityContext" in golden_spec:
            spec["securityContext"] = {**golden_spec["securityContext"], **(spec.get("securityContext") or {})}
        status.update(initContainers=None, containers=[PROXY])
    else:
        native = native_sidecars_default(version) if native is None else native
        init = copy.deepcopy(next(c for c in golden_spec["initContainers"] if c["name"] == INIT))
        init["image"] = image
        if proxy_requests:
            for injected in (init, proxy):
                injected["resources"] = {**injected.get("resources", {}), "requests": dict(proxy_requests)}
        own_init = spec.get("initContainers", [])
        if native:
            proxy["restartPolicy"] = "Always"
            spec["initContainers"] = [init, proxy, *own_init]
            spec["containers"] = app
            status.update(initContainers=[INIT, PROXY], containers=None)
        else:
            proxy.pop("restartPolicy", None)
            spec["initContainers"] = [init, *own_init]
            spec["containers"] = [*app, proxy]
            status.update(initContainers=[INIT], containers=[PROXY])
        labels.setdefault("security.istio.io/tlsMode", "istio")
        if app:
            annotations.setdefault("kubectl.kubernetes.io/default-container", app[0]["name"])
            annotations.setdefault("kubectl.kubernetes.io/default-logs-container", app[0]["name"])
    spec["volumes"] = [*spec.get("volumes", []), *copy.deepcopy(injected_volumes)]
    labels.setdefault(
        "service.istio.io/canonical-name", labels.get("app.kubernetes.io/name") or labels.get("app") or workload
    )
    labels.setdefault(
        "service.istio.io/canonical-revision",
        labels.get("app.kubernetes.io/version") or labels.get("version") or "latest",
    )
    annotations["istio.io/rev"] = rev
    for key in ("prometheus.io/path", "prometheus.io/port", "prometheus.io/scrape"):
        annotations.setdefault(key, golden_meta["annotations"][key])
    status["revision"] = rev
    annotations[STATUS] = json.dumps(status, separators=(",", ":"))
    return out
