"""Running cases on a Mesh: apply the scenario's resources once, mint tokens, converge, record results."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from meshjwt import features
from meshjwt.converge import Outcome, Probe, converge_many
from meshjwt.errors import ApplyRefused, EnvironmentProblem, FailsCase, SkipsCase, TargetCannot, UnsupportedField
from meshjwt.mesh import Mesh, MeshInfo, Request, Response
from meshjwt.placeholders import substitute
from meshjwt.scenarios.model import Case, Expectation, Scenario, TokenSpec
from meshjwt.settings import Settings
from meshjwt.tokens import TokenFactory, mask, scrub


class Unsupported(SkipsCase):
    """The case needs something this target cannot do; reported as unsupported, never as failed."""


class StepNotRun(FailsCase):
    """A later step of a sequential scenario whose earlier step failed or errored: it would not test what it
    claims (its state never came about), so it is not run; an error, never a pass."""


class Verdict(str, Enum):
    """A case's verdict, carried as data from the runner to the test and the report."""

    PENDING = "pending"  # not decided (the case raised before converging)
    PASSED = "passed"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"  # reported, never counted as failed
    ERROR = "error"  # input the target cannot apply, or a cluster that failed the apply


@dataclass
class CaseResult:
    """The evidence for one case: what was sent (token masked), expected, observed, and the verdict."""

    case: Case
    scenario: Scenario
    request: str
    expected: Expectation
    outcome: Outcome | None = None
    missing_features: Mapping[str, str] = field(default_factory=dict)  # feature → why this mesh lacks it
    verdict: Verdict = Verdict.PENDING
    detail: str = ""
    #: what the verdict rests on when it is not a real component's answer: ("model", why) on the local target
    #: where a version table decides (the leaked FakeJwks per version, the validation webhook)
    evidence: tuple[str, str] | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The scenario's features plus the case's own, in order, without repeats."""
        return tuple(dict.fromkeys((*self.scenario.features, *self.case.features)))

    @property
    def observed(self) -> str:
        return self.outcome.last.summary() if self.outcome else "-"

    @property
    def accepted(self) -> Response | None:
        """The 2xx answer the mesh gave to a token this case expects to be refused, if it gave one (even once)."""
        return self.outcome.accepted if self.verdict == Verdict.FAILED and self.outcome else None

    @property
    def accepted_attack(self) -> bool:
        """The case failed because the mesh let a token through that it must refuse (2xx where ≥ 400 was due)."""
        return self.accepted is not None and self.case.token.is_attack


def names_attacker_url(case: Case) -> bool:
    """Whether a token of ``case`` names the attacker's URL (a jku/x5u header the run serves)."""
    return any("${ATTACKER_" in json.dumps(dict(t.jose)) for t in (case.token, *case.extra_tokens))


@dataclass
class ScenarioRunner:
    """Keeps one scenario applied at a time (cases run scenario by scenario) and runs cases."""

    mesh: Mesh
    tokens: TokenFactory
    settings: Settings
    current: str | None = None
    results: list[CaseResult] = field(default_factory=list)
    apply_seconds: list[float] = field(default_factory=list)
    _unsupported: dict[str, str] = field(default_factory=dict)
    _failed: dict[str, str] = field(default_factory=dict)  # scenario → why applying it failed
    _info: MeshInfo | None = None
    _planned: dict[str, list[Case]] = field(default_factory=dict)  # scenario → its cases selected for this run
    _ready: dict[str, CaseResult] = field(default_factory=dict)  # results converged with an earlier case
    _performed: set[str] = field(default_factory=set)  # cases whose actions were done (sequential scenarios)
    _broken_steps: dict[str, str] = field(default_factory=dict)  # scenario → the step that could not be done
    _failed_steps: dict[str, str] = field(default_factory=dict)  # scenario → "not run: step <case> failed|errored"
    _jwks_touched: bool = False  # a lifecycle operation changed the JWKS server: restore it before the next apply
    #: a lifecycle operation may change the proxies' config by itself (istiod's background fetches) since the last
    #: apply or awaited refresh: answers may be stale, so convergence rules (not the confirmed config) decide
    _unsettled: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # scenario → the refusal it expected and got

    def plan(self, pairs: Sequence[tuple[Scenario, Case]]) -> None:
        """The cases this run will ask for: the first case of a scenario converges all of them together."""
        for scenario, case in pairs:
            self._planned.setdefault(scenario.name, []).append(case)
    _attacker_urls: dict[str, str] = field(default_factory=dict)  # ATTACKER_JWKS_URL / ATTACKER_X5U_URL → URL

    def variables(self) -> dict[str, str]:
        return {"ISSUER": self.tokens.issuer, "JWKS_WITHOUT_ALG": self.tokens.jwks_without_alg_json(),
                **self.mesh.variables()}

    def ensure(self, scenario: Scenario) -> None:
        """Apply ``scenario``'s resources unless they are the current ones."""
        if scenario.name in self._unsupported:
            raise Unsupported(self._unsupported[scenario.name])
        if scenario.name in self._failed:  # the same apply would fail the same way: say it at once
            raise EnvironmentProblem(self._failed[scenario.name])
        if self.current == scenario.name:
            return
        resources = substitute(list(scenario.manifests), self.variables(), where=scenario.source)
        started = time.perf_counter()
        if self.current is not None:
            # every scenario starts from a mesh without the previous one's policies: on any mesh, an
            # unchanged listener keeps its proxy state (a JWKS fetched by Envoy, cached for minutes)
            self.mesh.clear()
            self.current = None
        if self._jwks_touched:
            self.mesh.restore_jwks_server()
            self._jwks_touched = False
        try:
            self.perform(scenario.before)
            self.mesh.use_path_normalization(scenario.path_normalization)
            self._apply(scenario, resources)
            self._unsettled = False
        except (TargetCannot, Unsupported) as exc:
            self._unsupported[scenario.name] = str(exc)
            raise Unsupported(str(exc)) from None
        except UnsupportedField as exc:
            raise UnsupportedField(f"scenario {scenario.name} ({scenario.source}): {exc}") from None
        except EnvironmentProblem as exc:  # the target could not apply it (or proxies never got it)
            self._failed[scenario.name] = f"scenario {scenario.name}: applying its resources failed: {exc}"
            raise EnvironmentProblem(self._failed[scenario.name]) from None
        self.apply_seconds.append(time.perf_counter() - started)
        self.current = scenario.name

    def _apply(self, scenario: Scenario, resources: list) -> None:
        """Apply; a scenario with ``expectApply`` must be refused (with its message), others must not be."""
        expected = scenario.expect_apply
        try:
            self.mesh.apply(resources, jwks_fetch_mode=scenario.jwks_fetch_mode)
        except ApplyRefused as exc:
            if not expected:
                raise EnvironmentProblem(f"the mesh refused the resources: {exc}") from None
            if expected.get("message") and expected["message"] not in str(exc):
                raise EnvironmentProblem(f"the mesh refused the resources, but not with {expected['message']!r}: "
                                         f"{exc}") from None  # fmt: skip
            self.refused[scenario.name] = str(exc)
            return
        if expected:
            raise EnvironmentProblem("the mesh accepted resources that Istio's validation webhook refuses"
                                     + (f" ({expected['message']})" if expected.get("message") else ""))

    def perform(self, actions: Sequence[Mapping[str, object]]) -> None:
        """Do a case's or scenario's mesh operations (JWKS lifecycle); one the target cannot do → Unsupported."""
        for action in actions:
            ((name, value),) = action.items()
            self._jwks_touched = True
            self._unsettled = name != "awaitJwksRefresh"  # awaiting the refresh and its push settles the config
            try:
                if name == "rotateJwks":
                    self.mesh.rotate_jwks(self.tokens.rotated_jwks_json())
                elif name == "jwksServer":
                    {"up": self.mesh.jwks_server_up, "down": self.mesh.jwks_server_down,
                     "failing": self.mesh.jwks_server_failing}[str(value)]()
                elif name == "slowJwks":
                    self.mesh.slow_jwks_server(float(value))  # type: ignore[arg-type]
                elif name == "serveJwksBody":
                    self.mesh.serve_jwks_body(str(value))
                elif name == "redirectJwks":
                    self.mesh.redirect_jwks()
                elif name == "awaitJwksRefresh":
                    self.mesh.await_jwks_refresh()
                elif name == "awaitJwksRetryWindow":
                    self.mesh.await_jwks_retry_window()
                elif name == "unrelatedPush":
                    self.mesh.unrelated_push()
                else:
                    raise EnvironmentProblem(f"unknown action {name!r}")
            except TargetCannot as exc:
                raise Unsupported(str(exc)) from None

    def build_request(self, case: Case) -> tuple[Request, str]:
        """The request with variables substituted and the tokens placed; plus a masked description."""
        variables = self.variables()
        request = case.request
        headers = {k: substitute(v, variables, where=case.id) for k, v in request.headers.items()}
        path = substitute(request.path, variables, where=case.id)
        host = substitute(request.host, variables, where=case.id) if request.host else None
        shown, masked_headers = path, dict(headers)
        extra: list[tuple[str, str]] = []
        for spec in (case.token, *case.extra_tokens):
            token = self.mint(spec, variables, case.id)
            if token is None:
                continue
            if spec.param:
                separator = "&" if "?" in path else "?"
                path = f"{path}{separator}{spec.param}={urllib.parse.quote(token, safe='')}"
                shown = f"{shown}{separator}{spec.param}={mask(token)}"
            elif spec is case.token:
                headers[spec.header] = f"{spec.prefix}{token}"
                masked_headers[spec.header] = f"{spec.prefix}{mask(token)}"
            else:  # an extra token in a header is one more header line, even if the name repeats
                extra.append((spec.header, f"{spec.prefix}{token}"))
                masked_headers[f"{spec.header} (+)"] = f"{spec.prefix}{mask(token)}"
        built = replace(request, path=path, host=host, headers=headers, extra_headers=(*request.extra_headers, *extra))
        description = f"{request.client} {request.method} {host or '(default host)'}{shown}"
        if masked_headers:
            description += f" headers={masked_headers}"
        return built, description

    def mint(self, spec: TokenSpec, variables: dict[str, str], where: str) -> str | None:
        """The case's token (claims and JOSE header with ``${VAR}`` substituted), or None for no token."""
        if spec.literal is not None:
            return substitute(spec.literal, variables, where=where)
        if spec.kind is None:
            return None
        jose_text = json.dumps(dict(spec.jose))
        for name in ("ATTACKER_JWKS_URL", "ATTACKER_X5U_URL"):
            if f"${{{name}}}" in jose_text:
                variables = {**variables, name: self.attacker_url(name)}
        if spec.kind == "istio-fake-jwks" and self.tokens.fake_jwks_key is None:
            try:
                self.tokens.fake_jwks_key = self.mesh.fake_jwks_signing_key()
            except TargetCannot as exc:
                raise Unsupported(str(exc)) from None
        claims = substitute(dict(spec.claims), variables, where=where)
        jose = substitute(dict(spec.jose), variables, where=where)
        return self.tokens.mint(spec.kind, spec.alg, claims, jose=jose or None)

    def attacker_url(self, name: str) -> str:
        """Where the target serves, for the rest of the run, the attacker's JWKS (``ATTACKER_JWKS_URL``, for jku) or
        certificate chain (``ATTACKER_X5U_URL``): asked once each; unsupported if the target can't."""
        if name not in self._attacker_urls:
            serve = {"ATTACKER_JWKS_URL": lambda: self.mesh.serve_attacker_jwks(self.tokens.attacker_jwks_json()),
                     "ATTACKER_X5U_URL": lambda: self.mesh.serve_attacker_x5u(self.tokens.attacker_x5u_pem())}[name]
            try:
                self._attacker_urls[name] = serve()
            except TargetCannot as exc:
                raise Unsupported(str(exc)) from None
        return self._attacker_urls[name]

    def _prepare(self, scenario: Scenario, case: Case) -> tuple[CaseResult, Request]:
        """The case's result record (expectation for this mesh, masked request) and the request to send."""
        info = self._info = self._info or self.mesh.info()
        fetch_mode = scenario.jwks_fetch_mode or info.jwks_fetch_mode
        expected = case.expect.for_mesh(info, fetch_mode)
        try:
            request, shown = self.build_request(case)
        except Unsupported as exc:  # e.g. a token the target cannot make (an attacker JWKS it cannot serve)
            result = CaseResult(case=case, scenario=scenario, request="(not sent)", expected=expected,
                                verdict=Verdict.UNSUPPORTED, detail=str(exc))  # fmt: skip
            return result, Request()
        result = CaseResult(case=case, scenario=scenario, request=shown, expected=expected,
                            evidence=self.mesh.evidence(scenario, case))  # fmt: skip
        missing = features.unsupported(result.features, info.flavor, info.version,
                                       self.settings.supported_features, self.settings.exempt_features)  # fmt: skip
        if missing:
            result.verdict, result.missing_features = Verdict.UNSUPPORTED, missing
            result.detail = "; ".join(f"{name}: {why}" for name, why in missing.items())
        return result, request

    def run(self, scenario: Scenario, case: Case) -> CaseResult:
        """Run one case to a verdict; never raises for a mismatch (the caller asserts on the result).

        The first case of a scenario converges, in the same rounds, every other planned case of that
        scenario (so a cluster sees one ``kubectl exec`` per round, not one per request); their
        results wait for their own call."""
        if case.id in self._ready:
            result = self._ready.pop(case.id)
            self.results.append(result)
            return result
        result, request = self._prepare(scenario, case)
        self.results.append(result)
        if result.verdict == Verdict.UNSUPPORTED:
            raise Unsupported(result.detail)
        try:
            self.ensure(scenario)
        except Unsupported as exc:
            result.verdict, result.detail = Verdict.UNSUPPORTED, str(exc)
            raise
        except (UnsupportedField, EnvironmentProblem) as exc:
            result.verdict, result.detail = Verdict.ERROR, str(exc)
            raise
        if scenario.sequential:  # steps in time: earlier steps' operations first, then this one's, alone
            try:
                for step in scenario.cases:
                    if scenario.name in self._failed_steps:  # its state never came about: not run, never passed
                        raise StepNotRun(self._failed_steps[scenario.name])
                    if scenario.name in self._broken_steps:  # later steps would not test what they claim
                        raise Unsupported(f"an earlier step could not be done: {self._broken_steps[scenario.name]}")
                    if step.id not in self._performed:
                        self._performed.add(step.id)
                        try:
                            self.perform(step.actions)
                        except Unsupported as exc:
                            self._broken_steps[scenario.name] = f"{step.name}: {exc}"
                            raise
                        except EnvironmentProblem:
                            self._failed_steps[scenario.name] = f"not run: step {step.name} errored"
                            raise
                    if step.id == case.id:
                        break
            except Unsupported as exc:
                result.verdict, result.detail = Verdict.UNSUPPORTED, str(exc)
                raise
            except (EnvironmentProblem, StepNotRun) as exc:
                result.verdict, result.detail = Verdict.ERROR, str(exc)
                raise
            self._converge([(result, request)])
            if result.verdict != Verdict.PASSED:
                self._failed_steps.setdefault(scenario.name, f"not run: step {case.name} failed")
            return result
        if names_attacker_url(case):  # alone: the attacker's server counts this case's requests only
            self._converge_watching_attacker(result, request)
            return result
        batch = [(result, request)]
        for other in self._planned.get(scenario.name, []):
            if names_attacker_url(other):
                continue
            if other.id != case.id and other.id not in self._ready and not self._ran(other):
                prepared = self._prepare(scenario, other)
                if prepared[0].verdict != Verdict.UNSUPPORTED:
                    batch.append(prepared)
        self._converge(batch)
        for other, _ in batch[1:]:
            self._ready[other.case.id] = other
        return result

    def _converge_watching_attacker(self, result: CaseResult, request: Request) -> None:
        """Converge a case whose token names the attacker's URL (jku/x5u); if the attacker's server got a request
        meanwhile, the mesh fetched a URL a token named: the case fails, even if the token was refused."""
        try:
            before = self.mesh.attacker_requests()
        except TargetCannot as exc:
            result.verdict, result.detail = Verdict.UNSUPPORTED, f"{exc}: whether the mesh fetched the URL is unknown"
            raise Unsupported(result.detail) from None
        self._converge([(result, request)])
        fetched = self.mesh.attacker_requests() - before
        if fetched:
            result.verdict = Verdict.FAILED
            result.detail = scrub(f"URL FETCHED: the mesh sent {fetched} request(s) to the attacker's server named in "
                                  f"the token ({result.case.id}; answer {result.observed}); "
                                  f"request: {result.request}")  # fmt: skip

    def _ran(self, case: Case) -> bool:
        return any(r.case.id == case.id for r in self.results)

    def _converge(self, batch: Sequence[tuple[CaseResult, Request]]) -> None:
        """Converge the batch's requests together and record each case's verdict and evidence."""

        def probe(result: CaseResult, request: Request) -> Probe:
            expected, case = result.expected, result.case
            return Probe(request, lambda r: expected.mismatch(r.status, r.headers, r.body),
                         settled=not self._unsettled and self.mesh.confirms_config(request.client),
                         must_refuse=expected.status >= 400
                         and any(t.present for t in (case.token, *case.extra_tokens)))  # fmt: skip

        outcomes = converge_many(self.mesh.request_many, [probe(res, req) for res, req in batch],
                                 self.settings.timeouts)  # fmt: skip
        for (result, _), outcome in zip(batch, outcomes, strict=True):
            result.outcome = outcome
            result.verdict = Verdict.PASSED if outcome.passed else Verdict.FAILED
            if not outcome.passed:
                result.detail = scrub(self._failure(result, outcome))

    def _failure(self, result: CaseResult, outcome: Outcome) -> str:
        """Why a case failed, with the answers seen (tokens are scrubbed by the caller)."""
        t, expected, case = self.settings.timeouts, result.expected, result.case
        accepted = result.accepted
        head = ""
        if accepted is not None:
            what = "ATTACK ACCEPTED" if result.accepted_attack else "TOKEN ACCEPTED"
            head = (f"{what}: the mesh answered {accepted.status} to token {case.token.describe()}"
                    f"{' (' + case.description + ')' if case.description else ''}; ")  # fmt: skip
        how = (f"failed at once: {outcome.problem}" if outcome.decisive is not None else
               f"{outcome.attempts} attempts in {outcome.seconds:.2f}s without {t.consecutive} consecutive matches "
               f"(timeout 'converge' = {t.converge:g}s); mismatches seen: {outcome.history}")  # fmt: skip
        return (f"{head}{case.id}: expected {expected.describe()}"
                + (f" ({expected.reason})" if expected.reason else "")
                + f"; last response {outcome.last.summary()}; {how}; answers seen: {outcome.answers}; "
                f"request: {result.request}")  # fmt: skip
