"""The HTTP side: routes of the Kubernetes REST API over the store, on its own asyncio loop in a thread."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from meshjwt.localmesh.validation import jwt_rule_errors
from meshjwt.tokens import scrub
from rehearsal.apiserver import admission, errors, exec_ws, patch, protobuf, rbac, tables, tls
from rehearsal.apiserver.controllers import Controllers, Injector
from rehearsal.apiserver.errors import ApiError
from rehearsal.apiserver.exec_ws import ExecHandler, ExecRequest
from rehearsal.apiserver.rbac import Attributes, Tenant
from rehearsal.apiserver.resources import Kind, NotServed, Registry
from rehearsal.apiserver.selectors import field_matcher, field_value, label_matcher
from rehearsal.apiserver.store import SYSTEM_NAMESPACES, Store

log = logging.getLogger("rehearsal.apiserver")
LogHandler = Callable[[dict[str, Any], str], str]
MAX_LINE = 2 * 1024 * 1024  # exec commands travel in the query string
STATUS_SUBRESOURCE = "status"
CRD_KEY = "customresourcedefinitions.apiextensions.k8s.io"
SSAR_KEY = "selfsubjectaccessreviews.authorization.k8s.io"
ISTIO_VALIDATOR = "validatingwebhookconfigurations.admissionregistration.k8s.io"  # present once istiod is installed


@dataclass
class Target:
    """A parsed resource URL."""

    kind: Kind
    version: str
    namespace: str
    name: str
    subresource: str


class ApiServer:
    """A Kubernetes API stand-in for the real kubectl and the kubernetes Python client (see the package doc)."""

    def __init__(
        self,
        name: str = "sim",
        kube_version: str = "v1.32.4",
        pod_ready_delay: float = 0.2,
        namespace_finalize_delay: float = 0.5,
        node: tuple[str, Mapping[str, str]] | None = ("meshjwt-control-plane", {}),
        injector: Injector | None = None,
        exec_handler: ExecHandler | None = None,
        log_handler: LogHandler | None = None,
        tenants: Mapping[str, Tenant | None] | None = None,  # token → tenant (None: a cluster admin)
        tls: bool | None = None,
    ) -> None:
        if not re.fullmatch(r"v\d+\.\d+\.\d+([-+.][\w.+-]*)?", kube_version):
            raise ValueError(f"kube_version must look like v1.32.4, not {kube_version!r}")
        self.name, self.kube_version = name, kube_version
        self.pod_ready_delay, self.namespace_finalize_delay = pod_ready_delay, namespace_finalize_delay
        self.node_name = node[0] if node else None
        self.injector, self.exec_handler, self.log_handler = injector, exec_handler, log_handler
        self.tenants = dict(tenants) if tenants is not None else None
        self.tls = tenants is not None if tls is None else tls  # kubectl sends tokens over https only
        self.ca_pem: str | None = None
        self.registry = Registry()
        self.store = Store(self.registry)
        self.store.subscribe(self._sync_crds)
        for ns in SYSTEM_NAMESPACES:
            self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        if node:
            self.store.create(admission.node(node[0], dict(node[1]), kube_version))
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._controllers: Controllers | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._stopped = False

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:port (0: any free port) in a daemon thread; returns ``http://127.0.0.1:P``."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"{self.name}-exec")
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve(port))
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"{self.name}-apiserver", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._loop.close()
            self._executor.shutdown()
            self._thread = None
            raise OSError(f"{self.name}: cannot listen on 127.0.0.1:{port}: {failure[0]}") from failure[0]
        assert self.url is not None
        return self.url

    async def _serve(self, port: int) -> None:
        assert self._loop is not None
        self._controllers = Controllers(
            self.store, self._loop, injector=self.injector, node=self.node_name,
            pod_ready_delay=self.pod_ready_delay, namespace_finalize_delay=self.namespace_finalize_delay,
        )
        self.store.subscribe(self._controllers.on_event)
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._route)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0,
                                     handler_cancellation=True, max_line_size=MAX_LINE, max_field_size=MAX_LINE)
        await self._runner.setup()
        context = None
        if self.tls:
            context, self.ca_pem = tls.serving_context()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=context)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{bound}"
        log.debug("%s: listening on %s", self.name, self.url)

    def stop(self) -> None:
        """Close watches, exec sessions and the port; join the loop thread and the worker threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        if self._controllers is not None:
            self.store.unsubscribe(self._controllers.on_event)
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout=15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)
            loop.close()
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)

    async def _shutdown(self) -> None:
        if self._controllers is not None:
            self._controllers.stop()
        for task in list(self._streams):
            task.cancel()
        if self._streams:
            await asyncio.gather(*self._streams, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def active_streams(self) -> int:
        """Watches and exec sessions in progress (each ends with its client, or at stop())."""
        return len(self._streams)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, path: str | Path, token: str | None = None, context: str = "sim") -> Path:
        """Write a complete kubeconfig (cluster with its CA over TLS, user with the token, current context).

        kubectl sends a token only over https: a server with tenants serves TLS (``tls`` overrides)."""
        if self.url is None:
            raise RuntimeError(f"{self.name}: start() the server before writing a kubeconfig")
        user: dict[str, Any] = {"token": token} if token else {}
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem.encode()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": user}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        target.chmod(0o600)
        return target

    # --- plumbing -----------------------------------------------------------------------
    def _sync_crds(self, event: str, resource: str, obj: dict[str, Any]) -> None:
        """A CRD's kind is served as soon as the CRD is stored (and Established), gone with it."""
        if resource != CRD_KEY:
            return
        if event == "DELETED":
            self.registry.remove_crd(obj)
            kind_key = f"{obj['spec']['names']['plural']}.{obj['spec']['group']}"
            for item in self.store.list(kind_key):
                with contextlib.suppress(ApiError):
                    self.store.delete(kind_key, item["metadata"].get("namespace"), item["metadata"]["name"])
            return
        self.registry.add_crd(obj)
        conditions = (obj.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" for c in conditions):
            names = obj["spec"].get("names", {})
            stamp = obj["metadata"].get("creationTimestamp")
            obj["status"] = {
                "acceptedNames": {k: v for k, v in names.items() if k in ("kind", "listKind", "plural", "singular",
                                                                          "shortNames", "categories")},
                "conditions": [{"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": stamp}
                               for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                               ("Established", "InitialNamesAccepted",
                                                "the initial names have been accepted"))],
                "storedVersions": [v["name"] for v in obj["spec"].get("versions", []) if v.get("storage")],
            }
            obj["metadata"].pop("resourceVersion", None)
            with contextlib.suppress(ApiError):
                self.store.replace(obj)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except ApiError as exc:
            status = exc.code
            return _json(exc.status(), exc.code)
        except asyncio.CancelledError:  # the client went away (handler_cancellation)
            status = 499
            raise
        except NotServed:
            status = 404
            return _json(ApiError(404, "the server could not find the requested resource", "NotFound",
                                  {}).status(), 404)
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug here or in a hook (injector, log handler): a Status, and the traceback
            log.exception("%s: %s %s failed", self.name, request.method, request.path)
            return _json(ApiError(500, scrub(f"internal error in the rehearsal API server: {exc!r}")).status(), 500)
        finally:
            if log.isEnabledFor(logging.DEBUG):  # exec commands carry tokens: masked
                query = "&".join(f"{k}={scrub(v)}" for k, v in request.query.items())
                log.debug("%s: %s %s -> %s (%.1f ms)", self.name, request.method,
                          f"{request.path}?{query}"[:300] if query else request.path, status,
                          (time.monotonic() - started) * 1000)

    def _tenant(self, request: web.Request) -> Tenant | None:
        if self.tenants is None:
            return None
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if token not in self.tenants:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return self.tenants[token]  # None: a cluster admin

    async def _route(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        parts = [p for p in request.path.split("/") if p]  # aiohttp has decoded the path
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
        if parts == ["version"]:
            major, minor, *_ = self.kube_version.lstrip("v").split(".")
            return _json({"major": major, "minor": minor, "gitVersion": self.kube_version,
                          "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                          "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"})
        if parts[0] in ("healthz", "readyz", "livez"):
            return web.Response(text="ok")
        if parts[0] == "openapi":
            return self._openapi(parts[1:])
        if parts == ["api"]:
            return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if parts == ["apis"]:
            return _json(self.registry.api_group_list())
        if parts[0] == "apis" and len(parts) == 2:
            group = self.registry.api_group(parts[1])
            if group is None:
                raise NotServed(parts[1])
            return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise NotServed(request.path)
        if not rest:
            doc = self.registry.resource_list(group, version)
            if doc is None:
                raise NotServed(request.path)
            return _json(doc)
        target = self._target(group, version, rest)
        verb = self._verb(request, target)
        self._authorize(request, tenant, verb, target)
        return await self._dispatch(request, verb, target, tenant)

    def _openapi(self, rest: list[str]) -> web.StreamResponse:
        if rest == ["v3"]:
            return _json(self.registry.openapi_v3_index(f"{self.registry.generation:08X}"))
        if len(rest) >= 3 and rest[0] == "v3":
            path = rest[1:]
            group, version = ("", path[1]) if path[0] == "api" else (path[1], path[2] if len(path) > 2 else "")
            doc = self.registry.openapi_v3_doc(group, version)
            if doc is not None:
                return _json(doc)
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        kind = self.registry.by_path(group, version, rest[0])
        if len(rest) > 3 or (namespace and not kind.namespaced):
            raise NotServed("/".join(rest))
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in kind.subresources:
            raise NotServed(sub)
        return Target(kind, version, namespace, name, sub)

    @staticmethod
    def _verb(request: web.Request, target: Target) -> str:
        method = request.method
        if target.subresource == "exec":
            return "create"
        if method == "GET":
            if target.name:
                return "get"
            return "watch" if request.query.get("watch") in ("true", "1") else "list"
        if method == "POST":
            return "create"
        if method == "DELETE":
            return "delete" if target.name else "deletecollection"
        return {"PUT": "update", "PATCH": "patch"}.get(method, method.lower())

    def _authorize(self, request: web.Request, tenant: Tenant | None, verb: str, target: Target) -> None:
        if tenant is None:
            return
        kind = target.kind
        name = target.name
        if kind.key == "namespaces" and not name:
            name = field_value(request.query.get("fieldSelector"), "metadata.name") or ""
        attrs = Attributes(verb, kind.group, kind.plural, target.namespace, name, target.subresource)
        if kind.key == "namespaces" and verb == "create":
            return  # decided once the body (and so the name) is known
        if not rbac.allowed(tenant, attrs):
            raise errors.forbidden(tenant.user, verb, kind.plural, kind.group, target.name, target.namespace,
                                   target.subresource)

    # --- verbs --------------------------------------------------------------------------
    async def _dispatch(
        self, request: web.Request, verb: str, target: Target, tenant: Tenant | None
    ) -> web.StreamResponse:
        sub = target.subresource
        if sub == "exec":
            return await self._exec(request, target)
        if sub == "log":
            return await self._log(request, target)
        if sub == "scale":
            return await self._scale(request, target)
        if verb == "get":
            obj = self._live(target)
            if sub == STATUS_SUBRESOURCE:
                return _json(obj)
            return self._answer(request, target, [obj], single=True)
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return await self._watch(request, target)
        if verb == "create":
            return await self._create(request, target, tenant)
        if verb == "update":
            return await self._update(request, target)
        if verb == "patch":
            return await self._patch(request, target)
        if verb == "delete":
            return await self._delete(request, target)
        if verb == "deletecollection":
            return await self._delete_collection(request, target)
        raise ApiError(405, f"the server does not allow this method on the requested resource ({request.method})",
                       "MethodNotAllowed")

    def _live(self, target: Target) -> dict[str, Any]:
        obj = self.store.get(target.kind.key, target.namespace, target.name)
        if obj is None:
            raise errors.not_found(target.kind, target.name)
        return _as_version(obj, target)

    def _answer(self, request: web.Request, target: Target, objects: list[dict[str, Any]], *, single: bool = False,
                rv: str = "") -> web.StreamResponse:
        if "as=Table" in request.headers.get("Accept", ""):
            include = request.query.get("includeObject", "Metadata")
            rv = rv or (objects[0]["metadata"].get("resourceVersion", "") if objects else "")
            return _json(tables.table(target.kind.key, objects, rv, include))
        if single:
            return _json(objects[0])
        return _json({"kind": f"{target.kind.kind}List", "apiVersion": target.kind.api_version,
                      "metadata": {"resourceVersion": rv}, "items": objects})

    def _matchers(self, request: web.Request) -> Callable[[dict[str, Any]], bool]:
        labels = label_matcher(request.query.get("labelSelector"))
        fields = field_matcher(request.query.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        match = self._matchers(request)
        rv, items = self.store.snapshot(target.kind.key, target.namespace or None)
        objects = [_as_version(o, target) for o in items if match(o)]
        return self._answer(request, target, objects, rv=str(rv))

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        match = self._matchers(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()
        since_text = request.query.get("resourceVersion", "")
        since = int(since_text) if since_text.isdigit() and since_text != "0" else None
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        # watch-list (kubectl 1.35+ lists by watching): every current object as ADDED, then a BOOKMARK marked
        # k8s.io/initial-events-end at the version they were read at, then the changes
        initial = request.query.get("sendInitialEvents") == "true"
        if initial:
            since = None

        def sink(rv: int, event: str, obj: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, (rv, event, obj))

        handle, backlog = self.store.watch(target.kind.key, target.namespace or None, since, sink)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        seen: set[tuple[str, str]] = set()
        try:
            await response.prepare(request)
            for item in backlog:
                queue.put_nowait(item)
            if initial:
                bookmark_rv = max([item[0] for item in backlog] or [self.store.snapshot(target.kind.key)[0]])
                queue.put_nowait((bookmark_rv, "BOOKMARK", {}))
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                try:
                    _rv, event, obj = await asyncio.wait_for(queue.get(), timeout=min(1.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                if event == "BOOKMARK":
                    mark = {"apiVersion": f"{target.kind.group}/{target.version}".lstrip("/"),
                            "kind": target.kind.kind, "metadata": {"resourceVersion": str(_rv),
                            "annotations": {"k8s.io/initial-events-end": "true"}}}  # fmt: skip
                    await response.write((json.dumps({"type": "BOOKMARK", "object": mark}) + "\n").encode())
                    continue
                key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                if match(obj):
                    if event == "DELETED":
                        seen.discard(key)
                    else:
                        seen.add(key)
                elif key in seen:
                    seen.discard(key)
                    event = "DELETED"
                else:
                    continue
                line = json.dumps({"type": event, "object": _as_version(obj, target)}) + "\n"
                await response.write(line.encode())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(handle)
            self._streams.discard(task)
        return response

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        if raw.startswith(protobuf.MAGIC) or "protobuf" in request.content_type:
            try:
                return protobuf.decode_object(raw)
            except ValueError as exc:
                raise ApiError(415, f"the body of the request was in an unknown format ({exc}) - this rehearsal"
                                    " server decodes protobuf for Namespace, ConfigMap, Secret and"
                                    " SelfSubjectAccessReview only: send JSON", "UnsupportedMediaType") from None
        try:
            if "yaml" in request.content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"the body of the request could not be decoded: {exc}") from None

    def _validate(self, obj: dict[str, Any], target: Target) -> None:
        """Istio's validating webhook, installed with istiod (validation.go, validateJwtRule)."""
        if target.kind.key == "requestauthentications.security.istio.io" and self.store.list(ISTIO_VALIDATOR):
            refused = [e for rule in (obj.get("spec") or {}).get("jwtRules") or [] for e in jwt_rule_errors(rule)]
            if refused:
                raise ApiError(400, 'admission webhook "validation.istio.io" denied the request: configuration is '
                                    f"invalid: {'; '.join(refused)}")  # fmt: skip

    async def _create(self, request: web.Request, target: Target, tenant: Tenant | None) -> web.StreamResponse:
        if target.kind.key == SSAR_KEY:
            spec = rbac.review_spec(await request.read(), request.content_type)
            return _json(rbac.review_answer(spec, tenant), 201)
        body = await self._body(request)
        if not isinstance(body, dict) or target.name:
            raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
        meta = body.setdefault("metadata", {})
        body.setdefault("apiVersion", target.kind.api_version)
        body.setdefault("kind", target.kind.kind)
        if body.get("kind") != target.kind.kind:
            raise ApiError(400, f"the API version in the data ({body.get('apiVersion')}) does not match the expected"
                                f" API version ({target.kind.api_version})")
        if target.kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != target.namespace:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on"
                                    " the request")
            meta["namespace"] = target.namespace
        if target.kind.key == "namespaces" and tenant is not None:
            attrs = Attributes("create", "", "namespaces", "", meta.get("name", ""))
            if not rbac.allowed(tenant, attrs):
                raise errors.forbidden(tenant.user, "create", "namespaces", "", "", "")
        self._validate(body, target)
        body = self._store_version(admission.admit(body, target.kind, target.namespace), target)
        if _dry_run(request):
            return _json(body, 201)
        if target.kind.key == "pods":
            assert self._controllers is not None
            created = self._controllers.create_pod(body)
        else:
            created = self.store.create(body)
        return _json(_as_version(created, target), 201)

    def _store_version(self, obj: dict[str, Any], target: Target) -> dict[str, Any]:
        obj["apiVersion"] = target.kind.api_version
        return obj

    def _keep_status(self, new: dict[str, Any], live: dict[str, Any], target: Target) -> dict[str, Any]:
        """The status subresource rule: the main resource cannot change status, /status changes only it."""
        if target.subresource == STATUS_SUBRESOURCE:
            out = copy.deepcopy(live)
            out["status"] = new.get("status", {})
            out["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion",
                                                                             live["metadata"]["resourceVersion"])
            return out
        if STATUS_SUBRESOURCE in target.kind.subresources:
            if "status" in live:
                new["status"] = live["status"]
            else:
                new.pop("status", None)
        return new

    def _save(self, new: dict[str, Any], target: Target, request: web.Request) -> dict[str, Any]:
        """Store an updated object (``dryRun=All``: only answer it); a deletion whose finalizers are gone ends."""
        new["metadata"]["name"] = target.name
        self._validate(new, target)
        if target.kind.key == "secrets":
            admission.fold_string_data(new)
        if target.kind.namespaced:
            new["metadata"]["namespace"] = target.namespace
        if _dry_run(request):
            return _as_version(self._store_version(new, target), target)
        stored = self.store.replace(self._store_version(new, target))
        meta = stored["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and target.kind.key != "namespaces":
            self.store.delete(target.kind.key, target.namespace, target.name)
        return _as_version(stored, target)

    async def _update(self, request: web.Request, target: Target) -> web.StreamResponse:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be an object")
        live = self._live(target)
        if target.subresource == "finalize":
            target.subresource = ""
        return _json(self._save(self._keep_status(body, live, target), target, request))

    async def _patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        body = await self._body(request)
        content_type = request.content_type
        live = self.store.get(target.kind.key, target.namespace, target.name)
        if content_type == "application/apply-patch+yaml":
            return await self._apply(request, target, body, live)
        if live is None:
            raise errors.not_found(target.kind, target.name)
        live = _as_version(live, target)
        if content_type == "application/strategic-merge-patch+json":
            if not target.kind.builtin:
                raise ApiError(415, "the body of the request was in an unknown format - accepted media types"
                                    " include: application/json-patch+json, application/merge-patch+json,"
                                    " application/apply-patch+yaml", "UnsupportedMediaType")
            new = patch.strategic_merge(live, body)
        elif content_type == "application/merge-patch+json":
            new = patch.merge_patch(live, body)
        elif content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "a JSON patch must be a list of operations")
            new = patch.json_patch(live, body)
        else:
            raise ApiError(415, f"the body of the request was in an unknown format - {content_type}",
                           "UnsupportedMediaType")
        return _json(self._save(self._keep_status(new, live, target), target, request))

    async def _apply(self, request: web.Request, target: Target, body: Any,
                     live: dict[str, Any] | None) -> web.StreamResponse:
        """Server-side apply: create, or a three-way merge against what this field manager applied last."""
        if not isinstance(body, dict):
            raise ApiError(400, "an apply patch must be an object")
        manager = request.query.get("fieldManager", "")
        if not manager:
            raise ApiError(422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is"
                                " required for apply patch", "Invalid")
        body.setdefault("metadata", {}).setdefault("name", target.name)
        if live is None:
            created = await self._create_from_apply(request, target, body)
            if not _dry_run(request):
                self.store.side_state(created["metadata"]["uid"])[manager] = copy.deepcopy(body)
            return _json(_as_version(created, target), 201)
        live = _as_version(live, target)
        state = self.store.side_state(live["metadata"]["uid"])
        three_way = patch.removals(state.get(manager), body, target.kind.builtin)
        merge = patch.strategic_merge if target.kind.builtin else patch.merge_patch
        new = merge(live, three_way)
        saved = self._save(self._keep_status(new, live, target), target, request)
        if not _dry_run(request):
            state[manager] = copy.deepcopy(body)
        return _json(saved)

    async def _create_from_apply(self, request: web.Request, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        if target.kind.namespaced:
            body["metadata"]["namespace"] = target.namespace
        self._validate(body, target)
        body = self._store_version(admission.admit(body, target.kind, target.namespace), target)
        if _dry_run(request):
            return body
        if target.kind.key == "pods":
            assert self._controllers is not None
            return self._controllers.create_pod(body)
        return self.store.create(body)

    async def _delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        live = self._live(target)
        options = await self._body(request) if request.can_read_body else {}
        if (options or {}).get("dryRun") or _dry_run(request):
            return _json(live)
        if target.kind.key == "namespaces":
            if target.name in ("default", "kube-system", "kube-public"):
                raise ApiError(403, f'namespaces "{target.name}" is forbidden: this namespace may not be deleted',
                               "Forbidden", {"name": target.name, "kind": "namespaces"})
            return _json(self.store.mark_deleting("namespaces", None, target.name, phase="Terminating"))
        if live["metadata"].get("finalizers"):
            return _json(_as_version(self.store.mark_deleting(target.kind.key, target.namespace, target.name),
                                     target))
        return _json(_as_version(self.store.delete(target.kind.key, target.namespace, target.name), target))

    async def _delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        match = self._matchers(request)
        gone = []
        for obj in self.store.list(target.kind.key, target.namespace or None):
            if match(obj):
                with contextlib.suppress(ApiError):
                    gone.append(self.store.delete(target.kind.key, obj["metadata"].get("namespace"),
                                                  obj["metadata"]["name"]))
        return _json({"kind": f"{target.kind.kind}List", "apiVersion": target.kind.api_version,
                      "metadata": {}, "items": gone})

    async def _scale(self, request: web.Request, target: Target) -> web.StreamResponse:
        live = self._live(target)
        spec = live.get("spec", {})
        selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector", {}).get("matchLabels") or {}).items())
        scale = {"kind": "Scale", "apiVersion": "autoscaling/v1",
                 "metadata": {k: live["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                                "creationTimestamp") if k in live["metadata"]},
                 "spec": {"replicas": spec.get("replicas", 1)},
                 "status": {"replicas": live.get("status", {}).get("replicas", 0), "selector": selector}}
        if request.method == "GET":
            return _json(scale)
        body = await self._body(request)
        if request.method == "PUT":
            new = body
        elif request.content_type == "application/json-patch+json":
            new = patch.json_patch(scale, body)
        else:
            new = patch.merge_patch(scale, body)
        live["spec"]["replicas"] = int(new.get("spec", {}).get("replicas", scale["spec"]["replicas"]))
        saved = self.store.replace(live)
        scale["spec"]["replicas"] = saved["spec"]["replicas"]
        scale["metadata"]["resourceVersion"] = saved["metadata"]["resourceVersion"]
        return _json(scale)

    def _pod_container(self, pod: dict[str, Any], wanted: str | None) -> str:
        spec = pod.get("spec", {})
        names = [c["name"] for c in spec.get("containers", [])]
        every = names + [c["name"] for c in spec.get("initContainers", []) + spec.get("ephemeralContainers", [])]
        if wanted:
            if wanted not in every:
                raise ApiError(400, f"container {wanted} is not valid for pod {pod['metadata']['name']}")
            return wanted
        default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
        if default in every:
            return str(default)
        if len(names) == 1:
            return names[0]
        raise ApiError(400, f"a container name must be specified for pod {pod['metadata']['name']}, choose one of:"
                            f" [{' '.join(names)}]")

    async def _exec(self, request: web.Request, target: Target) -> web.StreamResponse:
        pod = self._live(target)
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase in ("Succeeded", "Failed"):
            raise ApiError(400, f"cannot exec into a container in a completed pod; current phase is {phase}")
        container = self._pod_container(pod, request.query.get("container"))
        if phase != "Running":
            raise ApiError(400, f"unable to upgrade connection: container not found (\"{container}\")")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "this rehearsal API server speaks exec over WebSocket only (kubectl >= 1.30, or a"
                                " v4/v5.channel.k8s.io client)")
        command = request.query.getall("command", [])
        wants_stdin = request.query.get("stdin") in ("true", "1")
        exec_request = ExecRequest(target.namespace, pod, container, list(command), None)
        handler = self.exec_handler
        assert self._executor is not None
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            return await exec_ws.serve(request, exec_request, wants_stdin, _safe(handler), self._executor)
        finally:
            self._streams.discard(task)

    async def _log(self, request: web.Request, target: Target) -> web.StreamResponse:
        pod = self._live(target)
        container = self._pod_container(pod, request.query.get("container"))
        text = ""
        if self.log_handler is not None:
            assert self._executor is not None
            handler = self.log_handler
            text = await asyncio.get_running_loop().run_in_executor(self._executor, handler, pod, container)
        tail = request.query.get("tailLines")
        if tail is not None and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) else ""
        return web.Response(text=text, content_type="text/plain")


def _safe(handler: ExecHandler | None) -> ExecHandler | None:
    """An exec handler whose exceptions become exit code 1 with the error on stderr."""
    if handler is None:
        return None

    def run(request: ExecRequest) -> exec_ws.ExecResult:
        try:
            return handler(request)
        except Exception as exc:  # the handler is test code: report, do not crash the session
            log.exception("exec handler failed")
            return exec_ws.ExecResult(b"", scrub(f"exec handler failed: {exc}\n").encode(), 1)

    return run


def _dry_run(request: web.Request) -> bool:
    return request.query.get("dryRun") == "All"


def _as_version(obj: dict[str, Any], target: Target) -> dict[str, Any]:
    """An object as served at the requested version (no conversion: the apiVersion is all that differs)."""
    if target.kind.builtin or target.version == target.kind.version:
        return obj
    return {**obj, "apiVersion": f"{target.kind.group}/{target.version}"}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


__all__ = ["ApiServer"]
