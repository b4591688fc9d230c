"""The PostgreSQL statement timeout: configured on every connection, and a 503 problem when it fires."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.urls import path
from rest_framework.response import Response

from core.api.base import NucleusAPIView
from nucleus_project import settings as project_settings

POSTGRES_URL = "postgres://nucleus@db.example.test:5432/nucleus"


class SleepView(NucleusAPIView):
    """A statement slower than the configured timeout, as a runaway query would be."""

    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")
        return Response({"slept": True})


urlpatterns = [path("sleep/", SleepView.as_view())]


def database_config(monkeypatch, url: str, timeout: str | None) -> dict:
    monkeypatch.setenv("DATABASE_URL", url)
    if timeout is None:
        monkeypatch.delenv("DATABASE_STATEMENT_TIMEOUT_MS", raising=False)
    else:
        monkeypatch.setenv("DATABASE_STATEMENT_TIMEOUT_MS", timeout)
    return project_settings._database_config()


def test_postgresql_connections_time_out_after_30_seconds_by_default(monkeypatch):
    config = database_config(monkeypatch, POSTGRES_URL, None)
    assert config["OPTIONS"]["options"] == "-c statement_timeout=30000"


def test_the_timeout_is_configurable_and_keeps_options_of_the_url(monkeypatch):
    url = POSTGRES_URL + "?options=-c%20search_path%3Dnucleus"
    config = database_config(monkeypatch, url, "1500")
    assert config["OPTIONS"]["options"] == "-c search_path=nucleus -c statement_timeout=1500"


def test_zero_turns_the_timeout_off(monkeypatch):
    config = database_config(monkeypatch, POSTGRES_URL, "0")
    assert "options" not in config.get("OPTIONS", {})


def test_a_negative_timeout_stops_start_up(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_STATEMENT_TIMEOUT_MS must be 0"):
        database_config(monkeypatch, POSTGRES_URL, "-1")


def test_sqlite_has_no_statement_timeout(monkeypatch, tmp_path):
    config = database_config(monkeypatch, f"sqlite:///{tmp_path / 'db.sqlite3'}", "100")
    assert "options" not in config["OPTIONS"]


@pytest.mark.postgres
def test_the_server_applies_the_configured_timeout(db):
    options = connection.settings_dict["OPTIONS"].get("options", "")
    expected = options.split("statement_timeout=")[1].split()[0] if "statement_timeout=" in options else "0"
    with connection.cursor() as cursor:
        cursor.execute("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
        assert cursor.fetchone() == (expected,)


@pytest.fixture
def timeout_100ms(transactional_db, monkeypatch):
    """The test connection, reopened with the options DATABASE_STATEMENT_TIMEOUT_MS=100 configures."""
    monkeypatch.setenv("DATABASE_STATEMENT_TIMEOUT_MS", "100")
    monkeypatch.setenv("DATABASE_URL", "postgres://unused")  # only the OPTIONS are taken
    original = connection.settings_dict["OPTIONS"]
    connection.close()
    connection.settings_dict["OPTIONS"] = {**original, **project_settings._database_config()["OPTIONS"]}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["OPTIONS"] = original


@pytest.mark.postgres
@pytest.mark.urls("tests.test_statement_timeout")
def test_a_statement_cancelled_by_the_timeout_is_a_503_problem(timeout_100ms, owner):
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("100ms",)

    response = owner.get("/sleep/")

    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "type": "urn:nucleus:problem:database_timeout",
        "title": "Service unavailable",
        "status": 503,
        "detail": "The database took too long to answer; nothing was written. Retry later.",
        "code": "database_timeout",
    }
    with connection.cursor() as cursor:  # the connection is usable again afterwards
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
