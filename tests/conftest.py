"""Shared principals of the suite (STYLE.md): owner, reader, writer, outsider, operator."""

import os

import pytest
from django.db import connection
from rest_framework.test import APIClient

from core import services
from core.long_polls import stream_watcher
from tests.actors import TEST_ACTOR


def _start_order(item) -> tuple[bool, float]:
    slow = item.get_closest_marker("slow")
    return slow is None, -(slow.kwargs.get("seconds", 0) if slow else 0)


def pytest_collection_modifyitems(config, items):
    """Slow tests first, longest (`slow(seconds=N)`) first, so that pytest-xdist starts them early."""
    items.sort(key=_start_order)


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres") is None:
        return
    if connection.vendor == "postgresql":
        return
    if os.environ.get("NUCLEUS_REQUIRE_POSTGRES") == "1":
        pytest.fail("This test needs PostgreSQL and NUCLEUS_REQUIRE_POSTGRES=1 forbids skipping it.")
    pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://... to run it")


@pytest.fixture(autouse=True)
def _stream_watcher_stopped():
    """A test that long-polled leaves no watcher behind: its LISTEN connection would keep the test
    database from being dropped, and its subscribers from being counted afresh."""
    yield
    stream_watcher().stop()


def _client_for(name: str) -> APIClient:
    service, _ = services.service_ensure(actor=TEST_ACTOR, name=name, description=f"the {name} service")
    _, token = services.token_issue(actor=TEST_ACTOR, service=service, label="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.service = service
    client.token = token
    return client


@pytest.fixture
def owner(db) -> APIClient:
    """The service that owns the `items` collection."""
    return _client_for("owner")


@pytest.fixture
def reader(db) -> APIClient:
    """A service with a read grant on `items`."""
    return _client_for("reader")


@pytest.fixture
def writer(db) -> APIClient:
    """A service with a write grant on `items`."""
    return _client_for("writer")


@pytest.fixture
def outsider(db) -> APIClient:
    """A service with no grant at all."""
    return _client_for("outsider")


@pytest.fixture
def operator_user(db, django_user_model):
    return django_user_model.objects.create_user(
        username="alice", password="correct horse battery staple", is_staff=True, is_superuser=True
    )


@pytest.fixture
def operator(operator_user) -> APIClient:
    """A staff user calling the API with an admin session."""
    client = APIClient()
    client.force_login(operator_user)
    client.user = operator_user
    return client


@pytest.fixture
def items(owner, reader, writer):
    """A records collection owned by `owner`, readable by `reader`, writable by `writer`."""
    collection = services.collection_create(actor=TEST_ACTOR, name="items", owner=owner.service)
    services.grant_set(actor=TEST_ACTOR, collection=collection, service_name="reader", access="read")
    services.grant_set(actor=TEST_ACTOR, collection=collection, service_name="writer", access="write")
    return collection
