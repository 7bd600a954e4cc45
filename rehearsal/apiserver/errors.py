"""API errors as the real server words them, and their ``Status`` bodies."""

from __future__ import annotations

from typing import Any

from rehearsal.apiserver.resources import Kind

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           409: "AlreadyExists", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError"}


class ApiError(Exception):
    """An error answer: HTTP code, reason and message as a ``Status`` object."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` body."""
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason}
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(kind: Kind) -> str:
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


def _details(kind: Kind, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if kind.group:
        details["group"] = kind.group
    details["kind"] = kind.plural
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, f'{_qualified(kind)} "{name}" not found', "NotFound", _details(kind, name))


def already_exists(kind: Kind, name: str) -> ApiError:
    return ApiError(409, f'{_qualified(kind)} "{name}" already exists', "AlreadyExists", _details(kind, name))


def conflict(kind: Kind, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {_qualified(kind)} "{name}": the object has been modified;'
        " please apply your changes to the latest version and try again",
        "Conflict",
        _details(kind, name),
    )


def namespace_terminating(kind: Kind, name: str, namespace: str) -> ApiError:
    return ApiError(
        403,
        f'{_qualified(kind)} "{name}" is forbidden: unable to create new content in namespace {namespace}'
        " because it is being terminated",
        "Forbidden",
        _details(kind, name),
    )


def invalid(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(422, f'{kind.kind} "{name}" is invalid: {why}', "Invalid", _details(kind, name))


def forbidden(user: str, verb: str, resource: str, group: str, name: str, namespace: str,
              subresource: str = "") -> ApiError:
    """The RBAC refusal, worded like the real authorizer's."""
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    full = f"{resource}/{subresource}" if subresource else resource
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = resource
    return ApiError(
        403,
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{full}" in API group "{group}" {where}',
        "Forbidden",
        details,
    )
