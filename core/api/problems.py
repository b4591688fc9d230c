"""RFC 9457 problem details for every error the API returns."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import NucleusError

logger = logging.getLogger("nucleus.api")

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "urn:nucleus:problem:"

_DRF_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("not_authenticated", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("throttled", "Too many requests"),
    500: ("internal_error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


def problem(
    status_code: int, detail: str, *, code: str | None = None, title: str | None = None, **extra
) -> dict:
    default_code, default_title = _DRF_CODES.get(status_code, ("error", "Error"))
    code = code or default_code
    body = {
        "type": TYPE_BASE + code,
        "title": title or default_title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    body.update({name: value for name, value in extra.items() if value is not None})
    return _encodable(body)


def _encodable(value):
    """value with lone surrogates written as \\udXXX: they echo the request, and UTF-8 cannot hold them."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(name): _encodable(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


def problem_response(status_code: int, detail: str, **kwargs) -> JsonResponse:
    """A problem as a plain Django response, for middleware and URL-level handlers."""
    return JsonResponse(
        problem(status_code, detail, **kwargs), status=status_code, content_type=PROBLEM_CONTENT_TYPE
    )


def _validation_errors(detail, path: str = "") -> list[dict]:
    """Flatten DRF's nested validation detail into JSON Pointer errors."""
    if isinstance(detail, dict):
        errors = []
        for name, value in detail.items():
            sub = path if name == "non_field_errors" else f"{path}/{name}"
            errors.extend(_validation_errors(value, sub))
        return errors
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [{"path": path, "message": str(item)} for item in detail]
        errors = []
        for index, item in enumerate(detail):
            errors.extend(_validation_errors(item, f"{path}/{index}"))
        return errors
    return [{"path": path, "message": str(detail)}]


# PostgreSQL SQLSTATEs that say "try again", not "Nucleus is broken".
_RETRYABLE = {"40001": "serialization failure", "40P01": "deadlock", "55P03": "lock not available"}


def database_problem(exc: DatabaseError) -> tuple[int, dict, str] | None:
    """A problem for a database error a client can act on: 409 to retry a conflict, 503 when unavailable."""
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    if sqlstate in _RETRYABLE:
        detail = f"The request collided with a concurrent one ({_RETRYABLE[sqlstate]}); nothing was written."
        return 409, problem(409, detail, code="concurrent_write", title="Conflict"), "1"
    if sqlstate == "57014":  # statement timeout or cancel
        detail = "The database took too long to answer; nothing was written. Retry later."
        return 503, problem(503, detail, code="database_timeout", title="Service unavailable"), "5"
    if isinstance(exc, OperationalError | InterfaceError) or sqlstate.startswith(("08", "57P")):
        detail = "The database is unavailable; nothing was written. Retry later."
        return 503, problem(503, detail, code="database_unavailable", title="Service unavailable"), "5"
    return None


def exception_handler(exc, context):
    """DRF's exception handler, answering in problem details; unexpected errors become a bare 500."""
    headers = {}
    if isinstance(exc, NucleusError):
        body = problem(exc.status, exc.detail, code=exc.code, title=exc.title, errors=exc.errors, **exc.extra)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return Response(body, status=exc.status, content_type=PROBLEM_CONTENT_TYPE, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        body = problem(413, "The request body is larger than 10 MiB.")
        return Response(body, status=413, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = _DRF_CODES.get(exc.status_code, ("error",))[0]
        if isinstance(exc, exceptions.ValidationError):
            body = problem(
                422 if exc.status_code == 400 else exc.status_code,
                "The request body is invalid.",
                code="validation_failed",
                title="Validation failed",
                errors=_validation_errors(exc.detail),
            )
            return Response(body, status=body["status"], content_type=PROBLEM_CONTENT_TYPE, headers=headers)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = problem(exc.status_code, detail, code=code)
        return Response(body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE, headers=headers)
    if isinstance(exc, DatabaseError):
        mapped = database_problem(exc)
        if mapped is not None:
            status_code, body, retry_after = mapped
            logger.warning("Database refused a request: %s", body["code"], exc_info=exc)
            return Response(
                body,
                status=status_code,
                content_type=PROBLEM_CONTENT_TYPE,
                headers={"Retry-After": retry_after},
            )
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__ if context else "?")
    body = problem(500, "Nucleus failed to handle this request; it has been logged with the request id.")
    return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR, content_type=PROBLEM_CONTENT_TYPE)
