"""Diagnostics for a failed case: applied YAML, pods/events, istiod/gateway/sidecar logs, config_dump."""

from __future__ import annotations

from pathlib import Path

from meshjwt.errors import EnvironmentProblem
from meshjwt.kube.kubectl import Kubectl
from meshjwt.tokens import scrub

CONFIG_DUMP = ["pilot-agent", "request", "GET", "config_dump"]


def plan(
    namespaces: list[str], root: str, app_ns: str, bookinfo_ns: str
) -> list[tuple[str, list[str], bool]]:
    """(file name, kubectl args, on control plane?) for everything worth collecting."""
    items: list[tuple[str, list[str], bool]] = []
    for ns in namespaces:
        items.append((f"pods-{ns}.txt", ["get", "pods", "-n", ns, "-o", "wide"], False))
        items.append((f"events-{ns}.txt", ["get", "events", "-n", ns, "--sort-by=.lastTimestamp"], False))
    items.append(
        (
            "istio-resources.yaml",
            [
                "get",
                "requestauthentications,authorizationpolicies,serviceentries,"
                "destinationrules,gateways,virtualservices",
                "-A",
                "-o",
                "yaml",
            ],
            True,
        )
    )
    items.append(("istiod.log", ["logs", "-n", root, "deploy/istiod", "--tail=3000"], False))
    items.append(
        ("ingressgateway.log", ["logs", "-n", root, "deploy/istio-ingressgateway", "--tail=2000"], False)
    )
    items.append(
        (
            "httpbin-proxy.log",
            ["logs", "-n", app_ns, "deploy/httpbin", "-c", "istio-proxy", "--tail=2000"],
            False,
        )
    )
    items.append(
        (
            "productpage-proxy.log",
            ["logs", "-n", bookinfo_ns, "deploy/productpage-v1", "-c", "istio-proxy", "--tail=2000"],
            False,
        )
    )
    items.append(
        (
            "httpbin-config_dump.json",
            ["exec", "-n", app_ns, "deploy/httpbin", "-c", "istio-proxy", "--", *CONFIG_DUMP],
            False,
        )
    )
    items.append(
        (
            "ingressgateway-config_dump.json",
            ["exec", "-n", root, "deploy/istio-ingressgateway", "--", *CONFIG_DUMP],
            False,
        )
    )
    return items


def collect(
    directory: Path,
    data: Kubectl,
    control: Kubectl | None,
    applied_yaml: str,
    namespaces: list[str],
    root: str,
    app_ns: str,
    bookinfo_ns: str,
) -> list[str]:
    """Write every item it can; a failing item leaves a ``.error`` file instead of stopping the rest."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    applied = directory / "applied.yaml"
    applied.write_text(scrub(applied_yaml))  # inline JWKS hold the HS secrets; config dumps too
    written.append(str(applied))
    for name, args, on_control in plan(namespaces, root, app_ns, bookinfo_ns):
        kubectl = (control or data) if on_control else data
        path = directory / name
        try:
            result = kubectl.run(args, timeout=30, check=False)
            if result.returncode != 0:
                path = directory / f"{name}.error"
                path.write_text(scrub(result.stderr))
            else:
                path.write_text(scrub(result.stdout))
        except EnvironmentProblem as exc:
            path = directory / f"{name}.error"
            path.write_text(str(exc) + "\n")
        written.append(str(path))
    return written
