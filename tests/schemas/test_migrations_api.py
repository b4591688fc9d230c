"""GET /api/v1/system/migrations/: applied and pending migrations per app, for operators only."""

from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.urls import reverse
from rest_framework.test import APIClient

from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db


def migrations_url() -> str:
    return reverse("system-migrations")


def migration_names(app: str) -> list[str]:
    """The migrations of a project app, read from its migrations directory."""
    folder = Path(settings.BASE_DIR) / app / "migrations"
    return sorted(path.stem for path in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))


def test_an_operator_sees_every_migration_applied_and_none_pending(operator):
    response = operator.get(migrations_url())

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"pending", "apps"}
    assert body["pending"] == 0
    apps = {entry["app"]: entry for entry in body["apps"]}
    assert [entry["app"] for entry in body["apps"]] == sorted(apps)
    assert all(set(entry) == {"app", "applied", "pending"} for entry in body["apps"])
    assert all(entry["pending"] == [] for entry in body["apps"])
    assert apps["core"]["applied"] == migration_names("core")
    assert "0004_collection_schema" in apps["core"]["applied"]
    assert apps["schemas"]["applied"] == migration_names("schemas")
    assert apps["schemas"]["applied"][0] == "0001_schema_registry"
    assert {"auth", "contenttypes", "reversion"} <= set(apps)


def test_an_unapplied_migration_is_reported_pending(operator):
    MigrationRecorder(connection).migration_qs.filter(app="schemas", name="0001_schema_registry").delete()

    body = operator.get(migrations_url()).json()

    apps = {entry["app"]: entry for entry in body["apps"]}
    assert body["pending"] == 1
    assert apps["schemas"]["pending"] == ["0001_schema_registry"]
    assert "0001_schema_registry" not in apps["schemas"]["applied"]
    assert apps["core"]["pending"] == []


@pytest.mark.parametrize("caller", ["owner", "outsider"])
def test_a_service_gets_403(request, caller):
    client = request.getfixturevalue(caller)

    assert_problem(client.get(migrations_url()), 403, "forbidden")


def test_an_unauthenticated_caller_gets_401(db):
    assert_problem(APIClient().get(migrations_url()), 401)


@pytest.mark.parametrize("change", [{"is_active": False}, {"is_staff": False, "is_superuser": False}])
def test_a_session_of_an_inactive_or_non_staff_account_gets_401(operator, operator_user, change):
    for name, value in change.items():
        setattr(operator_user, name, value)
    operator_user.save()

    assert_problem(operator.get(migrations_url()), 401)
