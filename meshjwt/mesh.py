"""The interface every target implements: apply Istio resources, send requests, report identity."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshjwt.settings import TargetOptions

Client = Literal["mesh", "ingress"]


@dataclass(frozen=True)
class Request:
    """One HTTP request, sent from inside the mesh (sleep pod → httpbin) or through the ingress gateway."""

    client: Client = "mesh"
    method: str = "GET"
    path: str = "/headers"
    host: str | None = None  # None: the target's default (httpbin.foo:8000 in mesh, the gateway's host)
    headers: Mapping[str, str] = field(default_factory=dict)
    #: more header lines, sent after ``headers`` even when a name repeats (e.g. a second Authorization)
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Response:
    """What came back. ``status`` 0 means no HTTP answer at all (see ``error``)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    body: str = ""
    error: str | None = None  # connection failure, curl exit code, ...

    def summary(self, limit: int = 120) -> str:
        """A short printable form: status and the start of the body."""
        if self.status == 0:
            return f"no response ({self.error})"
        body = " ".join(self.body.split())
        return f"{self.status} {body[:limit]!r}"


@dataclass(frozen=True)
class MeshInfo:
    """Who is under test: the mesh flavour and version, and how JWKS are fetched."""

    target: str
    flavor: str  # "istio" | "asm"
    version: str  # "1.30", "1.12.4", ...
    jwks_fetch_mode: str  # "istiod" | "hybrid" | "envoy"
    details: Mapping[str, str] = field(default_factory=dict)
    #: set by a target that models the mesh instead of driving a running one: what the model is (its reports say
    #: ``mode: reference``, never a verdict on a running mesh)
    reference: str | None = None


class Mesh(abc.ABC):
    """A mesh the suite can drive. One instance per pytest session, chosen by ``--target``."""

    name: ClassVar[str]
    #: a model of the mesh (the local reference mesh), not a running mesh: its runs are references, not verdicts
    reference_model: ClassVar[bool] = False
    #: this target's own options, typed: one pytest flag per field; the run's values reach the target as
    #: ``settings.target_options`` (as each pytest-testinfra backend takes its own keyword arguments)
    Options: ClassVar[type[TargetOptions]] = TargetOptions
    #: this target's defaults for the named timeouts (``Timeouts`` field → seconds); the user's win
    default_timeouts: ClassVar[Mapping[str, float]] = {}

    @abc.abstractmethod
    def start(self) -> None:
        """Bring the target up (or connect to it); raise a MeshJwtError with one line if it can't."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Release everything this run created. Must be safe to call twice and after a failed start."""

    @abc.abstractmethod
    def info(self) -> MeshInfo:
        """Identity of the mesh under test, for reports and expectations."""

    @abc.abstractmethod
    def variables(self) -> Mapping[str, str]:
        """Values substituted for ``${NAME}`` in scenario manifests (issuer, JWKS, hosts...)."""

    @abc.abstractmethod
    def apply(self, resources: Sequence[Mapping[str, Any]], *, jwks_fetch_mode: str | None = None) -> None:
        """Make exactly these Istio resources the scenario's configuration (replacing the previous set).

        ``jwks_fetch_mode`` asks for a control-plane JWKS mode; a target that cannot switch raises
        :class:`meshjwt.errors.TargetCannot` (the scenario is then reported unsupported). A resource the
        target cannot translate raises :class:`meshjwt.errors.UnsupportedField` (an error naming the field).
        """

    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every resource this run applied."""

    @abc.abstractmethod
    def request(self, request: Request) -> Response:
        """Send one request and return what came back (never raises for HTTP errors)."""

    def request_many(self, requests: Sequence[Request]) -> list[Response]:
        """Send ``requests`` in order and return their answers in the same order. A target where each
        round trip is costly (``kubectl exec`` on a cluster) sends them together."""
        return [self.request(r) for r in requests]

    def use_path_normalization(self, mode: str | None) -> None:
        """Run the next applies with meshConfig ``pathNormalization`` ``mode`` (None: the run's own). A target that
        cannot switch raises :class:`meshjwt.errors.TargetCannot` unless it already runs with ``mode``; by default
        a target cannot say which mode it runs, so any mode asked for is unsupported."""
        from meshjwt.errors import TargetCannot

        if mode is not None:
            raise TargetCannot(f"the {self.name} target cannot run meshConfig pathNormalization {mode}")

    def confirms_config(self, client: Client) -> bool:
        """Whether the proxy answering ``client``'s requests has confirmed that it runs the configuration of the
        last apply (local: Envoy acknowledged it; kind/cluster: its config_dump showed it). Then an answer
        cannot be stale and a wrong one fails its case at once (:mod:`meshjwt.converge`). Default: no."""
        return False

    def artifacts(self, directory: str) -> list[str]:
        """Write diagnostics for a failed case into ``directory``; return the files written."""
        return []

    def evidence(self, scenario: Any, case: Any) -> tuple[str, str] | None:
        """What a case's verdict rests on if not on real components: ("model", why), or None (real answers)."""
        return None

    def serve_attacker_x5u(self, pem: str) -> str:
        """Serve an attacker's X.509 certificate chain (PEM) for ``x5u`` attacks; return its URL (or TargetCannot)."""
        self._cannot("serve an attacker's certificate chain")

    def attacker_requests(self) -> int:
        """How many requests the attacker's server (jku/x5u URLs) got so far; TargetCannot if it cannot tell."""
        self._cannot("count the requests its attacker's server got")

    def serve_attacker_jwks(self, jwks_json: str) -> str:
        """Serve an attacker's JWKS for the rest of the run (``jku``/``x5u`` attacks); return its URL.

        A target that cannot raises :class:`meshjwt.errors.TargetCannot` (those cases are reported unsupported).
        """
        from meshjwt.errors import TargetCannot

        raise TargetCannot(f"the {self.name} target cannot serve an attacker JWKS (jku/x5u cases)")

    # --- JWKS lifecycle (07-jwks-lifecycle): the in-cluster JWKS server (nginx-proxy) and istiod's cache ----
    # Each default raises TargetCannot: a case needing an operation its target cannot do is unsupported.
    def _cannot(self, what: str) -> None:
        from meshjwt.errors import TargetCannot

        raise TargetCannot(f"the {self.name} target cannot {what} (JWKS lifecycle case)")

    def rotate_jwks(self, jwks_json: str) -> None:
        """Make the in-cluster JWKS server (nginx-proxy ``/get_jwks``) serve ``jwks_json`` from now on."""
        self._cannot("rotate the keys its JWKS server serves")

    def jwks_server_down(self) -> None:
        """Take the in-cluster JWKS server down (requests to it get no answer)."""
        self._cannot("take its JWKS server down")

    def jwks_server_up(self) -> None:
        """Bring the in-cluster JWKS server back (healthy, serving its keys)."""
        self._cannot("bring its JWKS server up")

    def jwks_server_failing(self) -> None:
        """Make the in-cluster JWKS server answer 503 (its pods and endpoints stay)."""
        self._cannot("make its JWKS server answer 503")

    def await_jwks_retry_window(self) -> None:
        """Return once istiod's background retries of a failed JWKS fetch are over (their shared deadline)."""
        self._cannot("wait for the end of istiod's background JWKS retries")

    def unrelated_push(self) -> None:
        """Make istiod push for a change elsewhere in the mesh (not to the applied resources)."""
        self._cannot("make istiod push for an unrelated change")

    def slow_jwks_server(self, seconds: float) -> None:
        """Make the in-cluster JWKS server wait ``seconds`` before each answer."""
        self._cannot("slow its JWKS server down")

    def serve_jwks_body(self, body: str) -> None:
        """Make the in-cluster JWKS server answer 200 with ``body`` (no JWKS) instead of its keys."""
        self._cannot("make its JWKS server answer something else than a JWKS")

    def redirect_jwks(self) -> None:
        """Make the in-cluster JWKS server answer a 302 redirect to its keys."""
        self._cannot("make its JWKS server redirect")

    def await_jwks_refresh(self) -> None:
        """Return once istiod completed its next periodic JWKS refresh (and the push that follows it)."""
        self._cannot("wait for istiod's next JWKS refresh")

    def restore_jwks_server(self) -> None:  # noqa: B027 - optional: nothing to undo where nothing could be done
        """Undo the operations above (healthy server, the run's keys). Safe to call when none was done."""

    def fake_jwks_signing_key(self) -> Any:
        """The private key of the substitute key set istiod inlines on versions that leaked it (``FakeJwks``),
        as a :class:`meshjwt.keys.SigningKey`; a target that cannot provide it raises TargetCannot."""
        self._cannot("sign with Istio's leaked FakeJwks key (it is Istio's; the suite never ships it)")
