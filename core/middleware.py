"""Request ids on every response, and the request body limit enforced before anything reads the body."""

import logging
import time

from django.conf import settings

from core.api.problems import problem_response
from core.principals import Principal
from core.request_id import request_id_from_header, reset_request_id, set_request_id

request_log = logging.getLogger("nucleus.request")


class RequestIdMiddleware:
    """Take the caller's X-Request-ID (or make one), expose it to logs and history, echo it back.

    Logs one line per request: principal, method, path (no query string), status and duration.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from_header(request.headers.get("X-Request-ID"))
        request.request_id = request_id
        token = set_request_id(request_id)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            if request_log.isEnabledFor(logging.INFO):
                request_log.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "principal": principal_label(request),
                        "method": request.method,
                        "path": request.path,  # never the query string: a `where` filter holds record data
                        "status_code": response.status_code,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    },
                )
        finally:
            reset_request_id(token)
        return response


def principal_label(request) -> str:
    """Who made the request, as history names actors: service:<name>, operator:<username>, or anonymous.

    Never a credential. DRF puts the authenticated Principal on the request; other views (the admin)
    have Django's session user; views may name a caller of their own (principal_label).
    """
    label = getattr(request, "principal_label", None)
    if label:
        return label
    user = getattr(request, "user", None)
    if isinstance(user, Principal):
        return user.label
    if user is not None and user.is_authenticated:
        return f"{'operator' if user.is_staff else 'user'}:{user.get_username()}"
    return "anonymous"


class BodySizeLimitMiddleware:
    """413 for bodies over NUCLEUS_MAX_BODY_BYTES, judged by Content-Length before the body is read.

    Also refuses NUL characters in the path or query string: no name, key or filter may hold one,
    and PostgreSQL cannot even compare text containing it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return problem_response(400, "The URL contains a NUL character.", code="nul_in_url")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(400, "Content-Length is not a number.", code="bad_content_length")
        if length > settings.NUCLEUS_MAX_BODY_BYTES:
            return problem_response(
                413, f"The request body is {length} bytes; the limit is {settings.NUCLEUS_MAX_BODY_BYTES}."
            )
        return self.get_response(request)
