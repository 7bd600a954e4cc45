"""Figures of the Kubernetes API stand-in (rehearsal/apiserver) driven by the real kubectl 1.32.

    python benchmarks/rehearsal_apiserver.py [--runs 20] [--kubectl PATH]

1. ``kubectl apply`` of the project's workloads (namespaces first, then ~30 objects), wall time.
2. Apply → every Deployment rolled out and its pods ready (pod_ready_delay 0.2 s, polled).
3. ``kubectl exec POD -- echo``: median and p90 of N round trips; ``kubectl get pods -o json`` likewise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshjwt.kube import readiness, workloads  # noqa: E402
from rehearsal.apiserver import ApiServer, ExecRequest, ExecResult  # noqa: E402

DEFAULT_KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"


def inject(pod: dict, namespace: dict) -> dict:
    if (namespace.get("metadata", {}).get("labels") or {}).get("istio-injection") == "enabled":
        pod["spec"].setdefault("initContainers", []).append(
            {"name": "istio-proxy", "image": "proxyv2", "restartPolicy": "Always"})
    return pod


def echo(request: ExecRequest) -> ExecResult:
    return ExecResult((" ".join(request.command[1:]) + "\n").encode())


def crd(kind: str, plural: str) -> dict:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.networking.istio.io"},
            "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema}]}}


def timed(runs: int, fn) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def figures(times: list[float]) -> str:
    ordered = sorted(times)
    return (f"median {statistics.median(times) * 1000:.0f} ms, p90 {ordered[int(len(ordered) * 0.9) - 1] * 1000:.0f}"
            f" ms (n={len(times)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kubectl", default=os.environ.get("MESHJWT_REHEARSAL_KUBECTL", DEFAULT_KUBECTL))
    args = parser.parse_args()
    if not os.access(args.kubectl, os.X_OK):
        print(f"error: kubectl not found at {args.kubectl} (pass --kubectl)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rehearsal-bench-") as tmp, ApiServer(
        name="bench", injector=inject, exec_handler=echo
    ) as server:
        server.start()
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig(Path(tmp) / "kc")),
               "KUBECACHEDIR": str(Path(tmp) / "cache")}

        def kubectl(*argv: str, stdin: str | None = None) -> str:
            done = subprocess.run([args.kubectl, *argv], input=stdin, capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"kubectl {' '.join(argv)} failed: {done.stderr.strip()}")
            return done.stdout

        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([crd("Gateway", "gateways"),
                                                               crd("VirtualService", "virtualservices")]))
        variables = {"NAMESPACE": "b-foo", "BOOKINFO_NAMESPACE": "b-bookinfo", "EXTERNAL_NAMESPACE": "b-jwks",
                     "INJECTION_LABEL_KEY": "istio-injection", "INJECTION_LABEL_VALUE": "enabled"}
        docs = workloads.load(variables) + workloads.jwks_configmaps("{}", "b-foo", "b-jwks")
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        rest = [d for d in docs if d["kind"] != "Namespace"]
        started = time.perf_counter()
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces))
        applied_ns = time.perf_counter()
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rest))
        applied = time.perf_counter()
        for ns_var, name, injected in workloads.DEPLOYMENTS:
            namespace = variables[ns_var]
            while True:
                dep = server.store.get("deployments.apps", namespace, name) or {}
                pods = [p for p in server.store.list("pods", namespace)
                        if p["metadata"]["labels"].get("app") == dep.get("spec", {}).get("selector", {}).get(
                            "matchLabels", {}).get("app")]
                if readiness.deployment_rolled_out(dep)[0] and readiness.pods_ready(pods, injected=injected)[0]:
                    break
                if time.perf_counter() - started > 60:
                    raise SystemExit(f"{namespace}/{name} not ready after 60 s")
                time.sleep(0.01)
        ready = time.perf_counter()
        print(f"kubectl apply: {len(namespaces)} namespaces {(applied_ns - started) * 1000:.0f} ms, then "
              f"{len(rest)} objects {(applied - applied_ns) * 1000:.0f} ms")
        print(f"apply → all {len(workloads.DEPLOYMENTS)} deployments rolled out and ready: {ready - started:.2f} s"
              f" (pod_ready_delay {server.pod_ready_delay} s)")
        pod = server.store.list("pods", "b-foo")[0]["metadata"]["name"]
        print("kubectl exec POD -- echo:", figures(timed(args.runs, lambda: kubectl(
            "exec", "-n", "b-foo", pod, "-c", pod.split("-")[0], "--", "echo", "x"))))
        print("kubectl get pods -o json:", figures(timed(args.runs, lambda: kubectl(
            "get", "pods", "-n", "b-foo", "-o", "json"))))
        print("kubectl apply (no change, 1 ConfigMap):", figures(timed(args.runs, lambda: kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump(rest[0])))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
