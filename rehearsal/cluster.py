"""``python -m rehearsal.cluster``: one simulated cluster, running until SIGTERM.

A Kubernetes API stand-in (or, with ``--split``, a data-plane and a control-plane one, as a managed
mesh has), seeded the way kind and ``istioctl install`` leave a cluster, with Istio's sidecar injection
and the local mesh's real data plane behind ``kubectl exec`` and the gateway port. It writes its
kubeconfigs and ``state.json`` into ``--dir``, prints ``ready`` and serves until told to stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from meshjwt.kube import plans
from meshjwt.kube.versions import DEFAULT_ISTIO, istio_release
from rehearsal.apiserver import ApiServer, ExecRequest, ExecResult, Tenant
from rehearsal.dataplane import DataPlane
from rehearsal.istio.inject import inject
from rehearsal.istio.install import install_objects
from rehearsal.istio.settings import istiod_settings

#: kind's default CoreDNS configuration (what the kind target edits for the external JWKS host)
KIND_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.12.0"
TENANT_TOKEN = "rehearsal-tenant-token"  # fixed names of simulated users, not secrets
ADMIN_TOKEN = "rehearsal-admin-token"


def kind_node(config: Mapping[str, Any] | None) -> tuple[dict[str, str], int | None]:
    """The first node's labels and the host port mapped to the gateway's http NodePort (kind config)."""
    node = ((config or {}).get("nodes") or [{}])[0]
    port = next((m.get("hostPort") for m in node.get("extraPortMappings") or []
                 if m.get("containerPort") == plans.INGRESS_NODE_PORTS["http"]), None)  # fmt: skip
    return dict(node.get("labels") or {}), port


def kube_system() -> list[dict[str, Any]]:
    """What a new kind cluster has: its namespaces and CoreDNS."""
    labels = {"k8s-app": "kube-dns"}
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                  for n in ("default", "kube-system", "kube-public", "kube-node-lease")]  # fmt: skip
    return [
        *namespaces,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": KIND_COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system",
                                                                     "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "coredns", "image": COREDNS_IMAGE}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                                             "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}},
    ]  # fmt: skip


def seed(server: ApiServer, objects: list[dict[str, Any]]) -> None:
    """Create ``objects`` (and their namespaces) in the server's store, skipping what exists."""
    for obj in objects:
        meta = obj.get("metadata", {})
        ns = meta.get("namespace")
        if ns and server.store.get("namespaces", None, ns) is None:
            server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kind = server.registry.by_api_version(obj["apiVersion"], obj["kind"])
        if server.store.get(kind.key, ns, meta["name"]) is not None:
            continue
        server.store.create(obj)


def preinstall_istio(data: ApiServer, control: ApiServer, version: str, fetch_mode: str) -> None:
    """The managed-mesh layout: istiod and the CRDs on the control plane, the ingress gateway (a
    LoadBalancer Service on 127.0.0.1) and the CRDs in the data-plane cluster."""
    overlay = plans.istio_operator(fetch_mode, node_ports=False)
    # a managed istiod refreshes JWKS on its default schedule (20 min): the kind install's short interval is ours
    overlay["spec"]["values"]["pilot"]["env"].pop("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", None)
    objects = install_objects(overlay, version)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    gateway = [o for o in objects if "ingressgateway" in o["metadata"]["name"]]
    rest = [o for o in objects if o not in crds and o not in gateway]
    seed(control, crds + rest)
    seed(data, crds + gateway)
    service = data.store.get("services", "istio-system", "istio-ingressgateway")
    if service:
        service["spec"]["type"] = "LoadBalancer"
        service.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": "127.0.0.1"}]}
        data.store.replace(service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="state folder (kubeconfigs, logs, state.json)")
    parser.add_argument("--name", default="rehearsal", help="cluster name")
    parser.add_argument("--kind-config", type=Path, help="kind cluster config (node labels, gateway port mapping)")
    parser.add_argument("--split", action="store_true", help="separate control-plane API (managed mesh)")
    parser.add_argument("--tenant-prefix", help="also write kubeconfigs of a user limited to namespaces PREFIX*")
    parser.add_argument("--istio-version", default=istio_release(DEFAULT_ISTIO).patch,
                        help="with --split: the preinstalled Istio")  # fmt: skip
    parser.add_argument("--jwks-fetch-mode", default="istiod", help="with --split: the preinstalled istiod's mode")
    parser.add_argument("--gateway-port", type=int, help="loopback port of the ingress gateway")
    parser.add_argument("--kube-version", default="v1.32.4")
    parser.add_argument("--pod-ready-delay", type=float, default=0.2)
    args = parser.parse_args(argv)
    state = args.dir
    state.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=state / "cluster.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")  # fmt: skip
    config = yaml.safe_load(args.kind_config.read_text()) if args.kind_config else None
    labels, mapped = kind_node(config)
    tenants = control_tenants = None  # callers with no token are cluster admins
    if args.tenant_prefix:  # namespace-only RBAC; on the control plane also Istio config in the root namespace
        user = "qualification-tenant"
        tenants = {TENANT_TOKEN: Tenant(user=user, namespace_prefixes=(args.tenant_prefix,)), ADMIN_TOKEN: None}
        control_tenants = {TENANT_TOKEN: Tenant(user=user, namespace_prefixes=(args.tenant_prefix, "istio-system")),
                           ADMIN_TOKEN: None}  # fmt: skip
    holder: dict[str, DataPlane] = {}

    def injector(pod: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
        settings = holder["dp"].istiod()
        if settings is None:  # no istiod, no injection webhook
            return pod
        return inject(pod, namespace, version=settings.version, revision=settings.revision or None,
                      hub=settings.hub)  # fmt: skip

    def exec_handler(request: ExecRequest) -> ExecResult:
        out, err, code = holder["dp"].exec(request.namespace, request.pod, request.container, request.command,
                                           request.stdin)  # fmt: skip
        return ExecResult(out, err, code)

    def log_handler(pod: dict[str, Any], container: str) -> str:
        return holder["dp"].logs(pod, container)

    common = {"kube_version": args.kube_version, "pod_ready_delay": args.pod_ready_delay,
              "exec_handler": exec_handler, "log_handler": log_handler}  # fmt: skip
    data = ApiServer(name=f"{args.name}-data" if args.split else args.name, injector=injector,
                     node=(f"{args.name}-control-plane", labels), tenants=tenants, **common)  # fmt: skip
    control = data
    if args.split:
        control = ApiServer(name=f"{args.name}-control", node=None, tenants=control_tenants, **common)
    plane = DataPlane(state / "dataplane", data.store, control.store, gateway_port=args.gateway_port or mapped,
                      istiod_settings=istiod_settings)  # fmt: skip
    holder["dp"] = plane
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        plane.start()
        urls = {"data": data.start()}
        if args.split:
            urls["control"] = control.start()
        for server in {id(data): data, id(control): control}.values():
            server.store.subscribe(plane.changed)
        seed(data, kube_system())
        if args.split:
            seed(control, [o for o in kube_system() if o["kind"] == "Namespace"])
            preinstall_istio(data, control, args.istio_version, args.jwks_fetch_mode)
        kubeconfigs = {"data": str(state / "kubeconfig")}
        admin = ADMIN_TOKEN if tenants else None  # over https (tenants), kubectl needs a credential
        data.kubeconfig(kubeconfigs["data"], token=admin, context=args.name)
        if args.split:
            kubeconfigs["control"] = str(state / "control-kubeconfig")
            control.kubeconfig(kubeconfigs["control"], token=admin, context=f"{args.name}-control")
        if args.tenant_prefix:
            kubeconfigs["tenant-data"] = str(state / "tenant-data-kubeconfig")
            data.kubeconfig(kubeconfigs["tenant-data"], token=TENANT_TOKEN, context=f"{args.name}-tenant")
            if args.split:
                kubeconfigs["tenant-control"] = str(state / "tenant-control-kubeconfig")
                control.kubeconfig(kubeconfigs["tenant-control"], token=TENANT_TOKEN,
                                   context=f"{args.name}-control-tenant")  # fmt: skip
        (state / "state.json").write_text(json.dumps({
            "pid": os.getpid(), "name": args.name, "urls": urls, "kubeconfigs": kubeconfigs,
            "gateway_port": plane.listeners["gateway"],
        }, indent=1))  # fmt: skip
        print("ready", flush=True)
        stop.wait()
    finally:
        for server in {id(data): data, id(control): control}.values():
            server.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
