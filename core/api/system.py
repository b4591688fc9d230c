"""Health, readiness and the shapes of URL-level errors."""

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from core.api.problems import problem_response


@require_GET
def healthz(request):
    """The process is up; touches no database."""
    return JsonResponse(
        {"status": "ok", "version": settings.NUCLEUS_VERSION, "revision": settings.NUCLEUS_REVISION}
    )


def pending_migrations() -> list[str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


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


def api_not_found(request, exception=None):
    return problem_response(404, f"There is nothing at {request.path}.")


def api_server_error(request):
    return problem_response(
        500, "Nucleus failed to handle this request; it has been logged with the request id."
    )
