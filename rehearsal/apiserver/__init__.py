"""A Kubernetes API stand-in driven by the real kubectl: discovery, CRUD with strategic/merge/JSON/apply
patches, watches, Deployment → Pod controllers, namespace termination, RBAC by tenant token,
SelfSubjectAccessReview (JSON or protobuf), ``exec`` over WebSocket and ``logs``.

Test support for rehearsing the kind/cluster targets; never conformance evidence."""

from rehearsal.apiserver.exec_ws import ExecRequest, ExecResult
from rehearsal.apiserver.rbac import Tenant
from rehearsal.apiserver.server import ApiServer

__all__ = ["ApiServer", "ExecRequest", "ExecResult", "Tenant"]
