"""Health, readiness and the shapes of URL-level errors."""

import sys

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from core.api.problems import PROBLEM_CONTENT_TYPE, database_problem, problem_response
from core.status import pending_migrations


@require_GET
def healthz(request):
    """The process is up; touches no database."""
    return JsonResponse(
        {"status": "ok", "version": settings.NUCLEUS_VERSION, "revision": settings.NUCLEUS_REVISION}
    )


@require_GET
def readyz(request):
    """The database answers and every migration is applied; else 503 naming the failed check."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return problem_response(
            503,
            f"The database is unreachable: {exc.__class__.__name__}.",
            code="database_unreachable",
            title="Not ready",
            checks={"database": "failed", "migrations": "unknown"},
        )
    try:
        pending = pending_migrations()
    except DatabaseError as exc:
        return problem_response(
            503,
            f"Migration state cannot be read: {exc.__class__.__name__}.",
            code="migrations_unknown",
            title="Not ready",
            checks={"database": "ok", "migrations": "failed"},
        )
    if pending:
        return problem_response(
            503,
            f"{len(pending)} migrations are not applied; run manage.py migrate.",
            code="migrations_pending",
            title="Not ready",
            checks={"database": "ok", "migrations": "failed"},
            pending=pending,
        )
    return JsonResponse({"status": "ok", "checks": {"database": "ok", "migrations": "ok"}})


@csrf_exempt  # a 404 problem for every method; Django's CSRF check would answer unsafe ones with a 403 page
def api_not_found(request, exception=None):
    return problem_response(404, f"There is nothing at {request.path}.")


def api_server_error(request):
    return problem_response(
        500, "Nucleus failed to handle this request; it has been logged with the request id."
    )


def database_error_response(request) -> HttpResponse | None:
    """For handler500: the 503 (or 409) a database error outside DRF maps to, e.g. in the admin.

    Django calls handler500 inside its `except` block, so sys.exc_info() holds the error.
    """
    exc = sys.exc_info()[1]
    mapped = database_problem(exc) if isinstance(exc, DatabaseError) else None
    if mapped is None:
        return None
    status_code, body, retry_after = mapped
    if request.path.startswith("/api/"):
        response = JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)
    else:
        text = f"{body['title']}: {body['detail']}\n"
        response = HttpResponse(text, status=status_code, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = retry_after
    return response
