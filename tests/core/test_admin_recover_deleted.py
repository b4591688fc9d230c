"""The admin's "Recover deleted records": deleted records only, with their collection, page by page."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core import services
from core.admin import RECOVER_PER_PAGE
from core.models import Record
from tests.actors import TEST_ACTOR

pytestmark = pytest.mark.django_db

RECOVER_LIST = reverse("admin:core_record_recoverlist")


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def archive(owner):
    """A second collection of records, so that rows must say which collection they belong to."""
    return services.collection_create(actor=TEST_ACTOR, name="archive", owner=owner.service)


def listed(html: str) -> list[tuple[str, str]]:
    """(key, collection) of each row of the recover list, in order."""
    rows = re.findall(r'<tr class="nucleus-deleted">(.*?)</tr>', html, re.S)
    return [
        (
            re.search(r'class="key">([^<]*)<', row).group(1),
            re.search(r'class="collection">([^<]*)<', row).group(1),
        )
        for row in rows
    ]


def test_it_lists_only_deleted_records_with_their_collection(admin, items, archive):
    for key in ("live-1", "live-2", "gone"):
        services.record_create(collection=items, key=key, data={"key": key}, actor=TEST_ACTOR)
    services.record_create(collection=archive, key="old", data={}, actor=TEST_ACTOR)
    services.record_delete(collection=items, key="gone", actor=TEST_ACTOR)
    services.record_delete(collection=archive, key="old", actor=TEST_ACTOR)

    response = admin.get(RECOVER_LIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "live-1" not in html and "live-2" not in html
    assert listed(html) == [("old", "archive"), ("gone", "items")]  # newest deletion first
    assert Record.objects.count() == 2


def test_a_recovered_record_leaves_the_list(admin, items):
    services.record_create(collection=items, key="a", data={"n": 1}, actor=TEST_ACTOR)
    services.record_delete(collection=items, key="a", actor=TEST_ACTOR)
    deletion = re.search(r'href="([^"]*/recover/\d+/)"', admin.get(RECOVER_LIST).content.decode()).group(1)

    assert admin.post(deletion, {"_save": "Save", "data": "{}"}).status_code == 302

    assert Record.objects.get(collection=items, key="a").data == {"n": 1}
    assert listed(admin.get(RECOVER_LIST).content.decode()) == []


def test_a_deleted_record_that_was_created_again_is_not_listed(admin, items):
    services.record_create(collection=items, key="a", data={"n": 1}, actor=TEST_ACTOR)
    services.record_delete(collection=items, key="a", actor=TEST_ACTOR)
    services.record_create(collection=items, key="a", data={"n": 2}, actor=TEST_ACTOR)

    assert listed(admin.get(RECOVER_LIST).content.decode()) == []


def test_the_list_is_paginated(admin, items):
    total = RECOVER_PER_PAGE + 3
    for n in range(total):
        services.record_create(collection=items, key=f"k{n:04}", data={}, actor=TEST_ACTOR)
    services.record_create(collection=items, key="live", data={}, actor=TEST_ACTOR)
    for n in range(total):
        services.record_delete(collection=items, key=f"k{n:04}", actor=TEST_ACTOR)

    first = admin.get(RECOVER_LIST).content.decode()
    second = admin.get(RECOVER_LIST, {"p": 2}).content.decode()

    assert len(listed(first)) == RECOVER_PER_PAGE
    assert len(listed(second)) == 3
    keys = [key for key, _ in listed(first) + listed(second)]
    assert sorted(keys) == [f"k{n:04}" for n in range(total)]
    assert f"{total} deleted records" in first
    assert '?p=2"' in first and "live" not in first + second


@pytest.mark.parametrize("page", ["0", "99", "x", "-1"])
def test_a_page_out_of_range_shows_the_nearest_page(admin, items, page):
    services.record_create(collection=items, key="gone", data={}, actor=TEST_ACTOR)
    services.record_delete(collection=items, key="gone", actor=TEST_ACTOR)

    response = admin.get(RECOVER_LIST, {"p": page})

    assert response.status_code == 200
    assert listed(response.content.decode()) == [("gone", "items")]


def test_the_list_costs_the_same_queries_however_many_deleted_records(admin, items):
    def delete(keys) -> None:
        for key in keys:
            services.record_create(collection=items, key=key, data={}, actor=TEST_ACTOR)
            services.record_delete(collection=items, key=key, actor=TEST_ACTOR)

    def queries(expected_rows: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(listed(admin.get(RECOVER_LIST).content.decode())) == expected_rows
        return len(captured)

    delete(["first"])
    one = queries(1)
    delete([f"k{n}" for n in range(30)])

    assert queries(31) == one
