"""Request ids on every response, and the request body limit enforced before anything reads the body.

Nucleus' middleware works in both of Django's modes: synchronous for the requests served on request
threads, asynchronous for long-polls on the event loop (nucleus_project/asgi.py), where a middleware
that only works synchronously would hold a thread for the whole wait.
"""

import io
import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware

from core.api.problems import problem_response
from core.principals import Principal
from core.request_id import request_id_from_header, reset_request_id, set_request_id

request_log = logging.getLogger("nucleus.request")


class _BothModes:
    """A middleware that is called synchronously or, in an asynchronous chain, awaited (_acall)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self._acall(request)
        return self._call(request)


class RequestIdMiddleware(_BothModes):
    """Take the caller's X-Request-ID (or make one), expose it to logs and history, echo it back.

    Logs one line per request: principal, method, path (no query string), status and duration.
    """

    def _call(self, request):
        token, started = self._begin(request)
        try:
            response = self.get_response(request)
            self._end(request, response, started)
        finally:
            reset_request_id(token)
        return response

    async def _acall(self, request):
        token, started = self._begin(request)
        try:
            response = await self.get_response(request)
            self._end(request, response, started)
        finally:
            reset_request_id(token)
        return response

    def _begin(self, request):
        request.request_id = request_id_from_header(request.headers.get("X-Request-ID"))
        return set_request_id(request.request_id), time.monotonic()

    def _end(self, request, response, started: float) -> None:
        response["X-Request-ID"] = request.request_id
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
    wsgi.input_terminated, the ASGI server always). Reads at most one byte past NUCLEUS_MAX_BODY_BYTES, so
    that BodySizeLimitMiddleware refuses a longer body with 413 without holding more of it. Elsewhere (the
    development server) the body is left alone and BodySizeLimitMiddleware answers 411.
    """

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if _input_terminated(environ) and _unsized_body(environ):
            body = environ["wsgi.input"].read(settings.NUCLEUS_MAX_BODY_BYTES + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


def _input_terminated(environ) -> bool:
    """wsgi.input ends where the body does: gunicorn's own workers say so; under the ASGI server
    (nucleus_project/asgi.py, a2wsgi puts the scope in the environ) uvicorn de-chunks the body and
    a2wsgi's input ends with the last body message."""
    return bool(environ.get("wsgi.input_terminated")) or "asgi.scope" in environ


def _unsized_body(environ) -> bool:
    """A body announced by Transfer-Encoding (chunked) rather than by Content-Length."""
    return "HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH")


class BodySizeLimitMiddleware(_BothModes):
    """413 for bodies over NUCLEUS_MAX_BODY_BYTES, judged by Content-Length before the body is read.

    A body without Content-Length that ChunkedBodyMiddleware could not size is a 411: Django would
    read it as empty. Also refuses NUL characters in the path or query string: no name, key or
    filter may hold one, and PostgreSQL cannot even compare text containing it.
    """

    def _call(self, request):
        return self._refusal(request) or self.get_response(request)

    async def _acall(self, request):
        return self._refusal(request) or await self.get_response(request)

    def _refusal(self, request):
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
        return None


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise's static files, in either of Django's modes (whitenoise's own is synchronous only)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        path = request.path_info
        static_file = self.find_file(path) if self.autorefresh else self.files.get(path)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
