"""The path-normalization probe: send the corpus, without a token, through the mesh to real web servers.

For one path-normalization mode × backend × policy it applies the policy, checks that the plain private
path is denied and the public page served (polled, timeout 'converge'), then sends every corpus path once.
A **bypass** is a response carrying the run's secret. Each bypass is classed by the mode that documents
closing it (``//`` → MERGE_SLASHES, ``%2F``/``%5C`` → DECODE_AND_MERGE_SLASHES, anything else → BASE); a
bypass the mode under test should have closed is *unexplained* and fails the combination. (Envoy's BASE
normalization turns ``\\`` into ``/``, so ``/\\private`` reaches the backend as ``//private``: a ``//`` bypass.)

Zero bypasses must not come by accident, so three controls run before the corpus, each said on the ``probe``
line: the backend serves the secret on its own port (else no bypass could show); the plain private path is
denied with Envoy's RBAC body (``RBAC: access denied``, not any 403); and a dot-segment path shows whether the
mesh normalizes as the mode says (NONE must not: that makes NONE's "explained" falsifiable).
"""

from __future__ import annotations

import http.client
import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshjwt.converge import converge
from meshjwt.mesh import Response
from meshjwt.placeholders import substitute
from meshjwt.scenarios.loader import read_resources
from meshjwt.security.backends import BACKENDS, PRIVATE_PATH, PUBLIC_PATH, WebBackend, missing_reason
from meshjwt.security.corpus import Corpus
from meshjwt.settings import Timeouts
from meshjwt.targets.local import LocalMesh

MODES = ("NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")
POLICIES = ("deny-paths", "path-exclusion")
PROBE_NAMESPACE = "fuzz"
MIN_REQUESTS = 500  # per combination, when the corpus has that many
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "security"
_RANK = {mode: rank for rank, mode in enumerate(MODES)}
RBAC_DENIED = "RBAC: access denied"  # Envoy's RBAC filter's denial body (istio-jwt-semantics.md §4)
#: per policy: a dot-segment path, and whether a mesh that normalizes it (every mode but NONE) lets it through
DOT_CONTROL = {"deny-paths": "/public/../private/secret.html", "path-exclusion": "/private/../public/index.html"}


def new_secret() -> str:
    """The marker the private page holds this run (its presence in a response is a bypass)."""
    return f"secret_data_leaked-{secrets.token_hex(8)}"


def closed_by(path: str) -> str:
    """The weakest normalization mode documented to close a bypass through ``path`` (query/fragment ignored)."""
    raw = path.split("?", 1)[0].split("#", 1)[0]
    if "%2f" in raw.lower() or "%5c" in raw.lower():
        return "DECODE_AND_MERGE_SLASHES"
    if "//" in raw.replace("\\", "/"):  # BASE normalization turns a backslash into a slash: /\x is //x
        return "MERGE_SLASHES"
    return "BASE"


def explained(mode: str, path: str) -> bool:
    """True if a bypass through ``path`` is a documented weakness of ``mode`` (a stronger mode closes it)."""
    return _RANK[mode] < _RANK[closed_by(path)]


def policy_resources(policy: str, variables: Mapping[str, str]) -> list[dict[str, Any]]:
    """The probe policy's Istio resources (``manifests/security/probe-<policy>.yaml``), variables filled in."""
    values = {**variables, "PROBE_NAMESPACE": PROBE_NAMESPACE}
    return substitute(read_resources(MANIFESTS / f"probe-{policy}.yaml"), values, where=f"probe policy {policy}")


@dataclass(frozen=True)
class Bypass:
    """A request that got the secret without a token."""

    request_line: str
    status: int
    closed_by: str
    explained: bool

    def as_dict(self) -> dict[str, Any]:
        return {"request": self.request_line, "status": self.status, "closedBy": self.closed_by,
                "explainedByMode": self.explained}  # fmt: skip


@dataclass
class Combination:
    """What one mode × backend × policy gave."""

    mode: str
    backend: str
    policy: str
    requests: int = 0
    bypasses: list[Bypass] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    truncated: bool = False  # the time budget ran out before the corpus did
    problem: str | None = None  # the sanity check failed: nothing was probed
    unsupported: str | None = None
    controls: list[str] = field(default_factory=list)  # the controls that held, in order

    @property
    def line(self) -> str:
        """``probe MODE BACKEND POLICY: N requests, M bypasses; controls: …`` (stable, for comparing runs)."""
        what = f"{self.mode} {self.backend} {self.policy}"
        controls = f"; controls: {', '.join(self.controls)}" if self.controls else ""
        return f"probe {what}: {self.requests} requests, {len(self.bypasses)} bypasses{controls}"

    @property
    def unexplained(self) -> list[Bypass]:
        return [b for b in self.bypasses if not b.explained]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "backend": self.backend, "policy": self.policy}
        if self.unsupported:
            return {**out, "unsupported": self.unsupported}
        out.update({
            "requests": self.requests, "bypassCount": len(self.bypasses), "unexplained": len(self.unexplained),
            "seconds": round(self.seconds, 3), "truncated": self.truncated,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "bypasses": [b.as_dict() for b in self.bypasses], "controls": list(self.controls),
        })  # fmt: skip
        if self.problem:
            out["problem"] = self.problem
        return out


class Client:
    """Keep-alive HTTP/1.1 to one loopback port; paths go out byte for byte."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str, host: str) -> Response:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self._conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
                self._conn.putheader("Host", host)
                self._conn.endheaders()
                answer = self._conn.getresponse()
                body = answer.read().decode(errors="replace")
                if answer.will_close:
                    self.close()
                return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, body)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt:
                    return Response(0, error=f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class ProbeSetup:
    """The backends the local mesh runs for the probe: sidecar listener port, or why a backend is missing."""

    secret: str
    listeners: dict[str, int] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    direct: dict[str, int] = field(default_factory=dict)  # each backend's own port (the direct control)


def start_backends(mesh: LocalMesh, timeout: float, names: Sequence[str] = BACKENDS) -> ProbeSetup:
    """Start each installed backend on loopback and put a sidecar in front of it (the mesh stops them)."""
    setup = ProbeSetup(secret=new_secret())
    for name in names:
        reason = missing_reason(name)
        if reason:
            setup.missing[name] = reason
            continue
        backend = WebBackend(name, setup.secret, keep=mesh.options.keep_workdir)
        try:
            backend.start(timeout)
        except BaseException:
            backend.stop()
            raise
        setup.listeners[name] = mesh.add_upstream(backend, name, PROBE_NAMESPACE, 80)
        setup.direct[name] = backend.port
    return setup


def run_combination(mesh: LocalMesh, setup: ProbeSetup, mode: str, backend: str, policy: str, corpus: Corpus,
                    variables: Mapping[str, str], timeouts: Timeouts, max_seconds: float) -> Combination:  # fmt: skip
    """Probe one combination; the mesh's mode and resources are restored afterwards."""
    result = Combination(mode, backend, policy)
    if backend in setup.missing:
        result.unsupported = setup.missing[backend]
        return result
    saved_mode, saved_resources = mesh.path_normalization, list(mesh.applied)
    client = Client(setup.listeners[backend], timeouts.request)
    host = f"{backend}.{PROBE_NAMESPACE}"
    try:
        if mode != saved_mode:
            mesh.set_path_normalization(mode)
        mesh.apply(policy_resources(policy, variables))

        direct = direct_control(setup, backend, host, timeouts.request)
        if direct:
            result.problem = direct
            return result
        result.controls.append("secret served directly")

        def sane(response: Response) -> str | None:
            if response.status != 200 or "public page" not in response.body:
                return f"public page: {response.summary()}"
            denied = client.get(PRIVATE_PATH, host)
            if denied.status != 403 or denied.body.strip() != RBAC_DENIED or setup.secret in denied.body:
                return f"{PRIVATE_PATH} without a token: {denied.summary()} (expected 403 {RBAC_DENIED!r})"
            return None

        outcome = converge(lambda: client.get(PUBLIC_PATH, host), sane, timeouts)
        if not outcome.passed:
            result.problem = (f"sanity check failed within {timeouts.converge:g}s (timeout 'converge'): "
                              f"{outcome.problem}")  # fmt: skip
            return result
        result.controls.append("private path 403 RBAC")
        normalization = normalization_control(client.get(DOT_CONTROL[policy], host), mode, policy, setup.secret)
        if normalization.startswith("control failed"):
            result.problem = normalization
            return result
        result.controls.append(normalization)
        started = time.perf_counter()
        for path in corpus.paths:
            if time.perf_counter() - started > max_seconds:
                result.truncated = True
                break
            response = client.get(path, host)
            result.requests += 1
            result.statuses[response.status] += 1
            if setup.secret in response.body:
                result.bypasses.append(Bypass(f"GET {path} HTTP/1.1", response.status, closed_by(path),
                                              explained(mode, path)))  # fmt: skip
        result.seconds = time.perf_counter() - started
        return result
    finally:
        client.close()
        if mesh.path_normalization != saved_mode:
            mesh.set_path_normalization(saved_mode)
        mesh.apply(saved_resources)


def direct_control(setup: ProbeSetup, backend: str, host: str, timeout: float) -> str | None:
    """None if ``backend`` serves the secret at the private path on its own port (no mesh); else why not, for
    then no bypass could ever show through the mesh."""
    direct = Client(setup.direct[backend], timeout)
    try:
        answer = direct.get(PRIVATE_PATH, host)
    finally:
        direct.close()
    if answer.status == 200 and setup.secret in answer.body:
        return None
    return f"control failed: {backend} itself does not serve the secret at {PRIVATE_PATH}: {answer.summary()}"


def normalization_control(answer: Response, mode: str, policy: str, secret: str) -> str:
    """What the dot-segment control path showed, if it fits ``mode`` ("dot segments normalized|kept"); else a
    sentence starting "control failed": the mode in force is not the one under test, so "explained" would lie."""
    path = DOT_CONTROL[policy]
    if policy == "deny-paths":  # normalized: the DENY matches; kept: the backend normalizes and leaks
        normalized = answer.status == 403 and answer.body.strip() == RBAC_DENIED
        kept = secret in answer.body
    else:  # path-exclusion: normalized: the public exemption matches; kept: denied
        normalized = answer.status == 200 and "public page" in answer.body
        kept = answer.status == 403 and answer.body.strip() == RBAC_DENIED
    wanted = "kept" if mode == "NONE" else "normalized"
    seen = "normalized" if normalized else "kept" if kept else None
    if seen == wanted:
        return f"dot segments {seen}"
    return (f"control failed: {path} answered {answer.summary()}, which does not show dot segments "
            f"{wanted} as mode {mode} must")
