"""A thin kubectl runner: explicit kubeconfig/context, timeouts, one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from meshjwt.errors import EnvironmentProblem
from meshjwt.kube.plans import kubectl_base


def first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:limit]


class Kubectl:
    """Runs kubectl against one cluster (a kubeconfig and optional context)."""

    def __init__(self, binary: str, kubeconfig: str | None = None, context: str | None = None) -> None:
        self.binary, self.kubeconfig, self.context = binary, kubeconfig, context

    @property
    def base(self) -> list[str]:
        return kubectl_base(self.binary, self.kubeconfig, self.context)

    def run(
        self, args: Sequence[str], *, input: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl args``; on failure (check) raise EnvironmentProblem naming the command."""
        command = [*self.base, *args]
        try:
            result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"kubectl {' '.join(args[:4])} timed out after {timeout:g}s") from None
        except FileNotFoundError:
            raise EnvironmentProblem(f"kubectl not found at {self.binary}") from None
        if check and result.returncode != 0:
            raise EnvironmentProblem(f"kubectl {' '.join(args[:4])} failed: {first_line(result.stderr)}")
        return result

    def json(self, args: Sequence[str], *, timeout: float = 30.0) -> dict[str, Any]:
        return json.loads(self.run([*args, "-o", "json"], timeout=timeout).stdout or "{}")

    def apply(self, docs: Iterable[Mapping[str, Any]], *, timeout: float = 60.0) -> None:
        """``kubectl apply -f -`` of the given documents (no-op for none)."""
        text = yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)
        if text.strip():
            self.run(["apply", "-f", "-"], input=text, timeout=timeout)

    def delete(self, ref: ResourceRef, *, timeout: float = 60.0, wait: bool = False) -> None:
        """Delete one resource if present."""
        args = ["delete", ref.resource, ref.name, "--ignore-not-found", f"--wait={str(wait).lower()}"]
        if ref.namespace:
            args += ["-n", ref.namespace]
        self.run(args, timeout=timeout)


class ResourceRef:
    """Identity of an applied object: ``kind.group``, namespace, name."""

    __slots__ = ("resource", "namespace", "name")

    def __init__(self, resource: str, namespace: str | None, name: str) -> None:
        self.resource, self.namespace, self.name = resource, namespace, name

    @classmethod
    def of(cls, doc: Mapping[str, Any], default_namespace: str | None = None) -> ResourceRef:
        api = str(doc.get("apiVersion", "v1"))
        group = api.split("/", 1)[0] if "/" in api else ""
        kind = str(doc["kind"]).lower()
        meta = doc.get("metadata") or {}
        return cls(
            f"{kind}.{group}" if group else kind, meta.get("namespace") or default_namespace, meta["name"]
        )

    def key(self) -> tuple[str, str | None, str]:
        return (self.resource, self.namespace, self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceRef) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"{self.resource}/{self.namespace or '-'}/{self.name}"
