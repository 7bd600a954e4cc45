"""pytest options of the kind and cluster targets: (flag, argparse kwargs) → ``settings.extra`` by dest."""

from __future__ import annotations

from typing import Any

from meshjwt.kube.versions import DEFAULT_ISTIO, ISTIO_RELEASES

KUBE_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "--istio-version",
        {
            "dest": "istio_version",
            "default": None,
            "metavar": "X.Y[.Z]",
            "help": f"kind: Istio to install (supported: {', '.join(sorted(ISTIO_RELEASES))}; "
            f"default {DEFAULT_ISTIO}, each with its pinned patch and node image)",
        },
    ),
    (
        "--keep-cluster",
        {
            "dest": "keep_cluster",
            "action": "store_true",
            "default": False,
            "help": "kind: keep the cluster after the run and reuse it next time "
            "(refused if it was made with another configuration)",
        },
    ),
    (
        "--cluster-name",
        {
            "dest": "cluster_name",
            "default": None,
            "help": "kind: cluster name (default meshjwt-<istio minor>)",
        },
    ),
    (
        "--kind-path",
        {
            "dest": "kind_path",
            "default": None,
            "help": "kind: use this kind binary instead of the pinned download (air-gapped sites)",
        },
    ),
    (
        "--kubectl-path",
        {"dest": "kubectl_path", "default": None, "help": "use this kubectl instead of the pinned download"},
    ),
    (
        "--istioctl-path",
        {
            "dest": "istioctl_path",
            "default": None,
            "help": "kind: use this istioctl (must match --istio-version) instead of the download",
        },
    ),
    (
        "--image-registry",
        {
            "dest": "image_registry",
            "default": None,
            "metavar": "HOST[/PATH]",
            "help": "pull workload images (and Istio's on kind, as HOST/istio) from this mirror",
        },
    ),
    (
        "--ingress-url",
        {
            "dest": "ingress_url",
            "default": None,
            "metavar": "URL",
            "help": "ingress gateway address (default: kind NodePort mapping, or the gateway "
            "Service's load-balancer address)",
        },
    ),
    (
        "--kubeconfig",
        {
            "dest": "kubeconfig",
            "default": None,
            "help": "cluster: kubeconfig of the data-plane cluster (default: $KUBECONFIG / ~/.kube/config)",
        },
    ),
    ("--context", {"dest": "context", "default": None, "help": "cluster: kubeconfig context to use"}),
    (
        "--control-plane-kubeconfig",
        {
            "dest": "control_plane_kubeconfig",
            "default": None,
            "help": "cluster: kubeconfig where Istio resources are applied (managed meshes)",
        },
    ),
    (
        "--namespace-prefix",
        {
            "dest": "namespace_prefix",
            "default": None,
            "help": "cluster: prefix of this run's namespaces (default mjwt-<random>); "
            "existing namespaces are never reused",
        },
    ),
    (
        "--keep-on-failure",
        {
            "dest": "keep_on_failure",
            "action": "store_true",
            "default": False,
            "help": "cluster: keep this run's namespaces when a case failed",
        },
    ),
    (
        "--root-namespace",
        {
            "dest": "root_namespace",
            "default": None,
            "help": "cluster: Istio root namespace (default istio-system)",
        },
    ),
    (
        "--injection-label",
        {
            "dest": "injection_label",
            "default": None,
            "metavar": "KEY=VALUE",
            "help": "label enabling sidecar injection (default istio-injection=enabled; "
            "e.g. istio.io/rev=asm-managed)",
        },
    ),
]
