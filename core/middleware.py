"""Request ids on every response, and the request body limit enforced before anything reads the body."""

import io
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


class ChunkedBodyMiddleware:
    """WSGI middleware: gives a de-chunked request body the Content-Length without which Django reads none.

    Only where the server de-chunks the body and ends wsgi.input with it (gunicorn sets
    wsgi.input_terminated). Reads at most one byte past NUCLEUS_MAX_BODY_BYTES into memory, so that
    BodySizeLimitMiddleware refuses a longer body with 413 without holding more of it. Elsewhere (the
    development server) the body is left alone and BodySizeLimitMiddleware answers 411.
    """

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if environ.get("wsgi.input_terminated") and _unsized_body(environ):
            body = environ["wsgi.input"].read(settings.NUCLEUS_MAX_BODY_BYTES + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


def _unsized_body(environ) -> bool:
    """A body announced by Transfer-Encoding (chunked) rather than by Content-Length."""
    return "HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH")


class BodySizeLimitMiddleware:
    """413 for bodies over NUCLEUS_MAX_BODY_BYTES, judged by Content-Length before the body is read.

    A body without Content-Length that ChunkedBodyMiddleware could not size is a 411: Django would
    read it as empty. Also refuses NUL characters in the path or query string: no name, key or
    filter may hold one, and PostgreSQL cannot even compare text containing it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return problem_response(400, "The URL contains a NUL character.", code="nul_in_url")
        if _unsized_body(request.META):
            return problem_response(
                411,
                "This server cannot read a chunked request body: send the body with Content-Length.",
                code="length_required",
                title="Length required",
            )
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(400, "Content-Length is not a number.", code="bad_content_length")
        limit = settings.NUCLEUS_MAX_BODY_BYTES
        if length > limit and "HTTP_TRANSFER_ENCODING" in request.META:
            # ChunkedBodyMiddleware stopped reading at limit + 1 bytes: the true length is unknown.
            return problem_response(
                413, f"The chunked request body is longer than the limit of {limit} bytes."
            )
        if length > limit:
            return problem_response(413, f"The request body is {length} bytes; the limit is {limit}.")
        return self.get_response(request)
