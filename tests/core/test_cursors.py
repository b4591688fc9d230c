"""Cursors on every list endpoint: only those Nucleus issued are accepted, and no cursor is ever a 500.

A cursor is signed: a forged one (even one shaped like a real one), an altered one, or one holding
what no database can compare (a NUL, a lone surrogate) is a 400 `invalid_cursor`, and nothing is
written.
"""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from backups.models import Backup
from core import services
from schemas import services as schema_services
from tests.actors import TEST_ACTOR
from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db


def forged(values: list) -> str:
    """A cursor in the shape Nucleus used before cursors were signed: base64url of a JSON list."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.fixture
def lists(owner, items, operator):
    """Every list that pages with a cursor, each holding two entries, as (client, url, params)."""
    for key in ["a", "b"]:
        services.record_put(collection=items, key=key, data={"n": 1}, actor=TEST_ACTOR)
    services.record_put(collection=items, key="a", data={"n": 2}, actor=TEST_ACTOR)
    services.collection_create(actor=TEST_ACTOR, name="other", owner=owner.service)
    for name in ["item", "thing"]:
        schema = schema_services.schema_create(name=name, owner=owner.service)
        schema_services.schema_version_register(
            schema=schema, definition={"type": "object"}, actor=TEST_ACTOR
        )
    schema_services.schema_version_register(
        schema=schema, definition={"type": "object", "title": "2"}, actor=TEST_ACTOR
    )
    for second in (1, 2):
        backup_id = f"20200101-00000{second}-000000"
        Backup.objects.create(
            id=backup_id,
            file=f"nucleus-{backup_id}.dump",
            size=1,
            sha256="0" * 64,
            engine=connection.vendor,
            database="nucleus",
            created_at=timezone.now(),
            duration_ms=1,
            created_by="operator:alice",
        )
    return {
        "records": (owner, reverse("record-list", args=["items"]), {}),
        "records-by-time": (owner, reverse("record-list", args=["items"]), {"ordering": "-updated_at"}),
        "collections": (owner, reverse("collection-list"), {}),
        "schemas": (owner, reverse("schema-list"), {}),
        "history": (owner, reverse("record-history", args=["items", "a"]), {}),
        "schema-versions": (owner, reverse("schema-version-list", args=["thing"]), {}),
        "backups": (operator, reverse("backup-list"), {}),
    }


LISTS = ["records", "records-by-time", "collections", "schemas", "history", "schema-versions", "backups"]


def issued_cursor(client, url: str, params: dict) -> str:
    response = client.get(url, {**params, "limit": 1})
    assert response.status_code == 200, response.content
    return parse_qs(urlsplit(response.json()["next"]).query)["cursor"][0]


@pytest.mark.parametrize("name", LISTS)
def test_every_list_pages_through_its_issued_cursors(lists, name):
    client, url, params = lists[name]
    everything = client.get(url, params).json()["results"]
    first = client.get(url, {**params, "limit": 1}).json()
    second = client.get(first["next"]).json()
    assert first["results"] + second["results"] == everything[:2]


@pytest.mark.parametrize("name", LISTS)
def test_it_rejects_a_forged_cursor_shaped_like_an_issued_one(lists, name):
    client, url, params = lists[name]
    shape = json.loads(base64.urlsafe_b64decode(issued_cursor(client, url, params).split(".")[0] + "=="))
    # The same shape as a real cursor (the records list's key, or a time and a key), a position of our
    # choosing: accepted before cursors were signed.
    position = forged(["2020-01-01T00:00:00+00:00", "a"] if len(shape) == 2 else ["1"])
    response = client.get(url, {**params, "cursor": position})
    body = assert_problem(response, 400, "invalid_cursor")
    assert body["title"] == "Bad request"


@pytest.mark.parametrize("name", LISTS)
def test_it_rejects_an_issued_cursor_that_was_altered(lists, name):
    client, url, params = lists[name]
    cursor = issued_cursor(client, url, params)
    payload, _, signature = cursor.rpartition(".")
    altered = [
        f"{payload}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{signature}",
        payload,
        f"{cursor}.{signature}",
    ]
    for cursor in altered:
        assert_problem(client.get(url, {**params, "cursor": cursor}), 400, "invalid_cursor")


@pytest.mark.parametrize("name", LISTS)
@pytest.mark.parametrize(
    "odd", ["\x00", "a\x00b", "\ud800", "a\udfff"], ids=["nul", "nul-inside", "high", "low"]
)
def test_a_cursor_holding_a_nul_or_a_lone_surrogate_is_400_not_500(lists, name, odd):
    client, url, params = lists[name]
    for values in ([odd], [odd, "a"], ["2020-01-01T00:00:00+00:00", odd]):
        assert_problem(client.get(url, {**params, "cursor": forged(values)}), 400, "invalid_cursor")


@pytest.mark.parametrize("name", LISTS)
def test_a_cursor_that_is_not_ascii_is_400(lists, name):
    client, url, params = lists[name]
    cursor = issued_cursor(client, url, params)
    assert_problem(client.get(url, {**params, "cursor": cursor + "é"}), 400, "invalid_cursor")
