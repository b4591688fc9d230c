"""A database outage outside DRF views (the admin, plain views) is a 503 with Retry-After, not a 500.

DRF views map database errors in core.api.problems.exception_handler; everything else reaches Django's
handler500, which maps them the same way. The fault suite (tests/faults/) shows both against a real
PostgreSQL that is stopped; these tests pin the mapping without one.
"""

import pytest
from django.db import OperationalError
from django.test import Client, override_settings
from django.urls import path


def database_down_view(request):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


def exploding_view(request):
    raise RuntimeError("secret detail")


urlpatterns = [
    path("api/v1/database-down/", database_down_view),
    path("pages/database-down/", database_down_view),
    path("pages/explode/", exploding_view),
]
handler500 = "nucleus_project.urls.handler500"


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@override_settings(ROOT_URLCONF=__name__)
def test_an_api_view_outside_drf_gets_a_503_problem(client):
    response = client.get("/api/v1/database-down/")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    body = response.json()
    assert (body["status"], body["code"]) == (503, "database_unavailable")
    assert "Connection refused" not in response.content.decode()


@override_settings(ROOT_URLCONF=__name__)
def test_a_page_gets_a_plain_503(client):
    response = client.get("/pages/database-down/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")
    assert response["Retry-After"] == "5"
    assert "127.0.0.1" not in response.content.decode()


@override_settings(ROOT_URLCONF=__name__)
def test_other_errors_stay_a_500(client):
    response = client.get("/pages/explode/")
    assert response.status_code == 500
    assert "secret detail" not in response.content.decode()


def test_the_admin_of_a_signed_in_operator_gets_a_503_when_sessions_cannot_be_read(client, monkeypatch):
    def unavailable(self):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.load", unavailable)
    client.cookies["sessionid"] = "s" * 32
    response = client.get("/admin/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
