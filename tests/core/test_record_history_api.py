"""GET .../records/{key}/history/ and POST .../records/{key}/revert/."""

from datetime import datetime

import pytest
from reversion.models import Version

from core import services
from core.models import Record
from tests.actors import TEST_ACTOR
from tests.core.records_support import (
    assert_problem,
    db_state,
    error_paths,
    history_count,
    history_url,
    if_match,
    record_url,
    records_url,
    revert_url,
)

pytestmark = pytest.mark.django_db


def history(client, key="k1", **params) -> list[dict]:
    response = client.get(history_url(key), params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.fixture
def lifecycle(owner, writer, items):
    """k1 created by owner, replaced by writer, patched by owner, then deleted by writer: versions 1-4."""
    assert owner.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json").status_code == 201
    assert writer.put(record_url("k1"), {"data": {"b": 2}}, format="json").status_code == 200
    assert owner.patch(record_url("k1"), {"data": {"c": 3}}, format="json").status_code == 200
    assert writer.delete(record_url("k1")).status_code == 204
    return items


def test_history_lists_every_write_newest_first(owner, lifecycle):
    entries = history(owner)

    assert [(e["version"], e["data"], e["deleted"], e["comment"], e["changed_by"]) for e in entries] == [
        (4, {"b": 2, "c": 3}, True, "deleted", "service:writer"),
        (3, {"b": 2, "c": 3}, False, "patched", "service:owner"),
        (2, {"b": 2}, False, "replaced", "service:writer"),
        (1, {"a": 1}, False, "created", "service:owner"),
    ]
    assert set(entries[0]) == {
        "version",
        "data",
        "deleted",
        "changed_at",
        "changed_by",
        "request_id",
        "comment",
    }
    moments = [datetime.fromisoformat(e["changed_at"]) for e in entries]
    assert all(moment.tzinfo is not None for moment in moments)
    assert moments == sorted(moments, reverse=True)


def test_history_of_a_deleted_record_is_readable(reader, lifecycle):
    assert not Record.objects.exists()
    assert len(history(reader)) == 4


def test_history_records_the_request_id(owner, items):
    response = owner.post(
        records_url(), {"key": "k1", "data": {}}, format="json", HTTP_X_REQUEST_ID="trace-42.a:b"
    )
    assert response["X-Request-ID"] == "trace-42.a:b"
    owner.put(record_url("k1"), {"data": {"x": 1}}, format="json")

    entries = history(owner)

    assert entries[1]["request_id"] == "trace-42.a:b"
    assert entries[0]["request_id"] not in ("", "trace-42.a:b")


def test_history_names_operators(operator, items):
    operator.post(records_url(), {"key": "k1", "data": {}}, format="json")

    assert history(operator)[0]["changed_by"] == "operator:alice"
    (version,) = Version.objects.get_for_object(Record.objects.get(key="k1"))
    assert version.revision.user == operator.user


def test_history_of_a_key_that_never_existed_is_404(owner, items):
    assert_problem(owner.get(history_url("never")), 404, "record_not_found")


def test_history_is_paginated_newest_first(owner, items):
    owner.post(records_url(), {"key": "k1", "data": {"v": 1}}, format="json")
    for v in range(2, 8):
        owner.put(record_url("k1"), {"data": {"v": v}}, format="json")

    pages, url, params = [], history_url("k1"), {"limit": 3}
    while url is not None and len(pages) < 10:
        response = owner.get(url, params)
        assert response.status_code == 200
        pages.append([e["version"] for e in response.json()["results"]])
        url, params = response.json()["next"], None

    assert pages == [[7, 6, 5], [4, 3, 2], [1]]


def test_history_page_that_fills_exactly_has_no_next(owner, items):
    owner.post(records_url(), {"key": "k1", "data": {}}, format="json")
    owner.put(record_url("k1"), {"data": {}}, format="json")

    response = owner.get(history_url("k1"), {"limit": 2})

    assert [e["version"] for e in response.json()["results"]] == [2, 1]
    assert response.json()["next"] is None


@pytest.mark.parametrize(
    ("params", "code"), [({"limit": 0}, "invalid_limit"), ({"cursor": "x"}, "invalid_cursor")]
)
def test_history_rejects_bad_paging(owner, lifecycle, params, code):
    assert_problem(owner.get(history_url("k1"), params), 400, code)


def test_history_is_per_collection(owner, items):
    other = services.collection_create(actor=TEST_ACTOR, name="other", owner=owner.service)
    owner.post(records_url("other"), {"key": "k1", "data": {"other": True}}, format="json")
    owner.post(records_url(), {"key": "k1", "data": {"items": True}}, format="json")

    assert [e["data"] for e in history(owner)] == [{"items": True}]
    assert history_count(other, "k1") == 1


def test_history_visibility(reader, outsider, lifecycle):
    assert reader.get(history_url("k1")).status_code == 200
    assert_problem(outsider.get(history_url("k1")), 404, "collection_not_found")


# --- revert --------------------------------------------------------------------------------------


def test_revert_writes_a_new_version_equal_to_an_older_one(owner, items):
    owner.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json")
    owner.put(record_url("k1"), {"data": {"a": 2, "b": [1]}}, format="json")

    response = owner.post(revert_url("k1"), {"version": 1}, format="json", HTTP_X_REQUEST_ID="revert-1")

    assert response.status_code == 200
    assert not response.has_header("Location")
    assert response.json()["version"] == 3
    assert response.json()["data"] == {"a": 1}
    assert response["ETag"] == '"3"'
    record = Record.objects.get(key="k1")
    assert (record.version, record.data) == (3, {"a": 1})
    latest = history(owner)[0]
    assert (latest["version"], latest["data"], latest["comment"]) == (3, {"a": 1}, "reverted to version 1")
    assert latest["request_id"] == "revert-1"


def test_revert_to_the_current_version_still_writes_a_version(owner, items):
    owner.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json")

    response = owner.post(revert_url("k1"), {"version": 1}, format="json")

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert history_count(items, "k1") == 2


def test_revert_recreates_a_deleted_record_and_continues_its_versions(owner, lifecycle):
    response = owner.post(revert_url("k1"), {"version": 2}, format="json")

    assert response.status_code == 201
    assert response["Location"] == "http://testserver" + record_url("k1")
    assert response.json()["version"] == 5
    assert response.json()["data"] == {"b": 2}
    assert response["ETag"] == '"5"'
    record = Record.objects.get(key="k1")
    assert (record.version, record.data) == (5, {"b": 2})
    assert [e["version"] for e in history(owner)] == [5, 4, 3, 2, 1]
    assert owner.put(record_url("k1"), {"data": {}}, format="json", **if_match(5)).status_code == 200


def test_revert_to_the_deletion_entry_restores_the_last_data(owner, lifecycle):
    response = owner.post(revert_url("k1"), {"version": 4}, format="json")

    assert response.status_code == 201
    assert response.json()["data"] == {"b": 2, "c": 3}


def test_revert_rejects_stale_if_match(owner, items):
    owner.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json")
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")
    before = db_state(items)

    response = owner.post(revert_url("k1"), {"version": 1}, format="json", **if_match(1))

    assert_problem(response, 412, "precondition_failed")
    assert db_state(items) == before


def test_revert_with_matching_if_match_applies(owner, items):
    owner.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json")
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")

    response = owner.post(revert_url("k1"), {"version": 1}, format="json", **if_match(2))

    assert response.status_code == 200
    assert Record.objects.get(key="k1").data == {"a": 1}


def test_revert_with_if_match_of_a_deleted_record_is_412(owner, lifecycle):
    before = db_state(lifecycle)

    assert_problem(owner.post(revert_url("k1"), {"version": 1}, format="json", **if_match(4)), 412)
    assert db_state(lifecycle) == before


def test_revert_to_a_missing_version_is_404(owner, lifecycle):
    before = db_state(lifecycle)

    assert_problem(owner.post(revert_url("k1"), {"version": 9}, format="json"), 404, "version_not_found")
    assert_problem(owner.post(revert_url("never"), {"version": 1}, format="json"), 404, "version_not_found")
    assert db_state(lifecycle) == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"version": 0}, "/version"),
        ({"version": "one"}, "/version"),
        ({}, "/version"),
        ({"version": 1, "x": 1}, "/x"),
    ],
)
def test_revert_rejects_a_bad_body(owner, lifecycle, body, path):
    before = db_state(lifecycle)

    response = owner.post(revert_url("k1"), body, format="json")

    assert path in error_paths(assert_problem(response, 422))
    assert db_state(lifecycle) == before


def test_revert_in_a_collection_requiring_if_match(owner):
    strict = services.collection_create(
        actor=TEST_ACTOR, name="strict", owner=owner.service, require_if_match=True
    )
    owner.post(records_url("strict"), {"key": "k1", "data": {"a": 1}}, format="json")
    owner.put(record_url("k1", "strict"), {"data": {"a": 2}}, format="json", **if_match(1))
    before = db_state(strict)

    assert_problem(
        owner.post(revert_url("k1", "strict"), {"version": 1}, format="json"), 428, "if_match_required"
    )
    assert db_state(strict) == before
    assert (
        owner.post(revert_url("k1", "strict"), {"version": 1}, format="json", **if_match(2)).status_code
        == 200
    )


def test_reader_may_not_revert(reader, lifecycle):
    before = db_state(lifecycle)

    assert_problem(reader.post(revert_url("k1"), {"version": 1}, format="json"), 403, "forbidden")
    assert db_state(lifecycle) == before
