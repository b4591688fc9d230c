"""POST /collections/{name}/records/bulk/: insert and upsert, all or nothing, with history."""

import json
import uuid

import pytest
from reversion.models import Revision, Version

from core import services
from core.models import Record, WriteMeta
from core.principals import Actor
from tests.actors import TEST_ACTOR
from tests.core.records_support import (
    assert_problem,
    bulk_url,
    db_state,
    error_paths,
    history_count,
    history_url,
    record_url,
)

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="service:owner")


def bulk(client, mode, records, collection="items", **headers):
    # json.dumps escapes lone surrogates, which the test client's own encoder cannot send.
    body = json.dumps({"mode": mode, "records": records})
    return client.generic("POST", bulk_url(collection), body, content_type="application/json", **headers)


def stored(collection) -> dict:
    return {
        key: (version, data)
        for key, version, data in Record.objects.filter(collection=collection).values_list(
            "key", "version", "data"
        )
    }


@pytest.fixture
def existing(items):
    """items holding a at version 2 and b at version 1."""
    services.record_create(collection=items, key="a", data={"v": 1}, actor=ACTOR)
    services.record_put(collection=items, key="a", data={"v": 2}, actor=ACTOR)
    services.record_create(collection=items, key="b", data={"v": 1}, actor=ACTOR)
    return items


def test_insert_creates_every_record_with_201(owner, items):
    response = bulk(owner, "insert", [{"key": f"k{i}", "data": {"i": i}} for i in range(5)])

    assert response.status_code == 201
    assert response.json() == {"results": [{"key": f"k{i}", "version": 1, "created": True} for i in range(5)]}
    assert stored(items) == {f"k{i}": (1, {"i": i}) for i in range(5)}
    record = Record.objects.get(key="k0")
    assert record.created_by == record.updated_by == "service:owner"


def test_insert_generates_keys_for_records_without_one(owner, items):
    response = bulk(
        owner, "insert", [{"data": {"i": 0}}, {"key": "given", "data": {"i": 1}}, {"data": {"i": 2}}]
    )

    assert response.status_code == 201
    keys = [item["key"] for item in response.json()["results"]]
    assert keys[1] == "given"
    assert all(str(uuid.UUID(key)) == key for key in (keys[0], keys[2]))
    assert stored(items) == {keys[0]: (1, {"i": 0}), "given": (1, {"i": 1}), keys[2]: (1, {"i": 2})}


def test_bulk_writes_one_revision_holding_a_version_of_every_record(owner, items):
    before = Revision.objects.count()

    response = bulk(
        owner, "insert", [{"key": f"k{i}", "data": {"i": i}} for i in range(20)], HTTP_X_REQUEST_ID="bulk-1"
    )

    assert response.status_code == 201
    assert Revision.objects.count() == before + 1
    revision = Revision.objects.latest("pk")
    assert revision.comment == "bulk insert"
    assert WriteMeta.objects.get(revision=revision).actor == "service:owner"
    assert WriteMeta.objects.get(revision=revision).request_id == "bulk-1"
    assert Version.objects.filter(revision=revision).count() == 20
    assert all(history_count(items, f"k{i}") == 1 for i in range(20))
    entry = owner.get(history_url("k7")).json()["results"]
    assert [(e["version"], e["data"], e["deleted"], e["comment"]) for e in entry] == [
        (1, {"i": 7}, False, "bulk insert")
    ]
    assert entry[0]["changed_by"] == "service:owner"
    assert entry[0]["request_id"] == "bulk-1"


def test_upsert_replaces_existing_records_and_creates_new_ones_with_200(owner, existing):
    a_before = Record.objects.get(key="a")

    response = bulk(owner, "upsert", [{"key": "new", "data": {"n": 1}}, {"key": "a", "data": {"v": 3}}])

    assert response.status_code == 200
    assert response.json()["results"] == [
        {"key": "new", "version": 1, "created": True},
        {"key": "a", "version": 3, "created": False},
    ]
    assert stored(existing) == {"a": (3, {"v": 3}), "b": (1, {"v": 1}), "new": (1, {"n": 1})}
    a_after = Record.objects.get(key="a")
    assert (a_after.created_at, a_after.created_by) == (a_before.created_at, a_before.created_by)
    assert a_after.updated_at > a_before.updated_at
    assert history_count(existing, "a") == 3
    assert history_count(existing, "b") == 1
    assert history_count(existing, "new") == 1
    assert owner.get(history_url("a")).json()["results"][0]["comment"] == "bulk upsert"
    assert owner.get(record_url("a"))["ETag"] == '"3"'


def test_upsert_of_existing_records_only_is_200(owner, existing):
    response = bulk(owner, "upsert", [{"key": "a", "data": {}}, {"key": "b", "data": {}}])

    assert response.status_code == 200
    assert [(r["version"], r["created"]) for r in response.json()["results"]] == [(3, False), (2, False)]


def test_upsert_of_new_records_only_is_201(owner, existing):
    response = bulk(owner, "upsert", [{"key": "c", "data": {}}])

    assert response.status_code == 201
    assert response.json()["results"] == [{"key": "c", "version": 1, "created": True}]


def test_bulk_continues_the_version_count_of_a_deleted_key(owner, existing):
    services.record_delete(collection=existing, key="a", actor=ACTOR)  # a's deletion is version 3

    response = bulk(owner, "insert", [{"key": "a", "data": {"v": 4}}])

    assert response.status_code == 201
    assert response.json()["results"] == [{"key": "a", "version": 4, "created": True}]
    assert stored(existing)["a"] == (4, {"v": 4})
    assert history_count(existing, "a") == 4


@pytest.mark.parametrize("index", [0, 3, 5])
def test_insert_with_an_existing_key_is_409_naming_its_index_and_writes_nothing(owner, existing, index):
    records = [{"key": f"k{i}", "data": {"i": i}} for i in range(6)]
    records[index]["key"] = "b"
    before = db_state(existing)

    response = bulk(owner, "insert", records)

    body = assert_problem(response, 409, "record_exists")
    assert body["index"] == index
    assert error_paths(body) == [f"/records/{index}/key"]
    assert db_state(existing) == before


def test_a_409_lists_every_existing_key_in_request_order(owner, existing):
    response = bulk(
        owner, "insert", [{"key": "x", "data": {}}, {"key": "b", "data": {}}, {"key": "a", "data": {}}]
    )

    body = assert_problem(response, 409, "record_exists")
    assert body["index"] == 1
    assert error_paths(body) == ["/records/1/key", "/records/2/key"]


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"key": "k3", "data": [1]}, "/records/3/data"),
        ({"key": "k3", "data": {"deep": {"s": "\x00"}}}, "/records/3/data/deep/s"),
        ({"key": "k3", "data": {"list": [1, "\ud800"]}}, "/records/3/data/list/1"),
        ({"key": "bad key", "data": {}}, "/records/3/key"),
        ({"key": "k3"}, "/records/3/data"),
        ({"key": "k3", "data": {}, "extra": 1}, "/records/3/extra"),
        ("not an object", "/records/3"),
    ],
)
@pytest.mark.parametrize("mode", ["insert", "upsert"])
def test_an_invalid_item_is_422_naming_its_index_and_nothing_is_written(owner, existing, mode, bad, path):
    records = [{"key": "a", "data": {"v": 9}}, {"key": "k1", "data": {}}, {"key": "k2", "data": {}}, bad]
    records += [{"key": "k4", "data": {}}]
    if mode == "insert":
        records[0]["key"] = "k0"
    before = db_state(existing)

    response = bulk(owner, mode, records)

    body = assert_problem(response, 422)
    assert body["index"] == 3
    assert error_paths(body) == [path]
    assert "3" in body["detail"]
    assert db_state(existing) == before


def test_every_invalid_item_is_reported(owner, items):
    records = [
        {"key": "ok", "data": {}},
        {"key": "", "data": {}},
        {"key": "k2", "data": 5},
        {"data": {"x": "\x00"}},
    ]

    response = bulk(owner, "insert", records)

    body = assert_problem(response, 422)
    assert body["index"] == 1
    assert error_paths(body) == ["/records/1/key", "/records/2/data", "/records/3/data/x"]
    assert not Record.objects.exists()


def test_duplicate_keys_in_one_batch_are_422(owner, existing):
    before = db_state(existing)

    response = bulk(
        owner, "upsert", [{"key": "k", "data": {}}, {"key": "a", "data": {}}, {"key": "k", "data": {}}]
    )

    body = assert_problem(response, 422)
    assert body["index"] == 2
    assert error_paths(body) == ["/records/2/key"]
    assert "record 0" in body["errors"][0]["message"]
    assert db_state(existing) == before


def test_the_key_bulk_is_reserved_in_bulk_too(owner, items):
    response = bulk(owner, "insert", [{"key": "ok", "data": {}}, {"key": "bulk", "data": {}}])

    body = assert_problem(response, 422)
    assert body["index"] == 1
    assert error_paths(body) == ["/records/1/key"]
    assert not Record.objects.exists()


def test_a_thousand_records_are_accepted(owner, items):
    response = bulk(owner, "insert", [{"key": f"k{i:04d}", "data": {"i": i}} for i in range(1000)])

    assert response.status_code == 201
    assert len(response.json()["results"]) == 1000
    assert Record.objects.filter(collection=items).count() == 1000
    assert Version.objects.get_for_model(Record).count() == 1000


def test_more_than_a_thousand_records_are_422(owner, items):
    before = db_state(items)

    response = bulk(owner, "insert", [{"key": f"k{i:04d}", "data": {}} for i in range(1001)])

    body = assert_problem(response, 422, "too_many_items")
    assert error_paths(body) == ["/records"]
    assert db_state(items) == before


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"mode": "insert", "records": []}, ["/records"]),
        ({"mode": "insert", "records": {"key": "a"}}, ["/records"]),
        ({"mode": "replace", "records": [{"key": "a", "data": {}}]}, ["/mode"]),
        ({"records": [{"key": "a", "data": {}}]}, ["/mode"]),
        ({"mode": "insert"}, ["/records"]),
        ({"mode": "insert", "records": [{"key": "a", "data": {}}], "atomic": False}, ["/atomic"]),
    ],
)
def test_a_malformed_request_is_422(owner, items, body, paths):
    before = db_state(items)

    response = owner.post(bulk_url(), body, format="json")

    assert error_paths(assert_problem(response, 422)) == paths
    assert db_state(items) == before


def test_upsert_touching_an_existing_record_of_a_collection_requiring_if_match_is_428(owner):
    strict = services.collection_create(
        actor=TEST_ACTOR, name="strict", owner=owner.service, require_if_match=True
    )
    services.record_create(collection=strict, key="a", data={}, actor=ACTOR)
    before = db_state(strict)

    response = bulk(owner, "upsert", [{"key": "new", "data": {}}, {"key": "a", "data": {"v": 2}}], "strict")

    body = assert_problem(response, 428, "if_match_required")
    assert body["index"] == 1
    assert db_state(strict) == before


def test_a_collection_requiring_if_match_accepts_bulk_creation(owner):
    strict = services.collection_create(
        actor=TEST_ACTOR, name="strict", owner=owner.service, require_if_match=True
    )

    assert bulk(owner, "upsert", [{"key": "a", "data": {}}], "strict").status_code == 201
    assert bulk(owner, "insert", [{"key": "b", "data": {}}], "strict").status_code == 201
    assert stored(strict) == {"a": (1, {}), "b": (1, {})}


def test_writer_may_bulk_write_and_reader_may_not(writer, reader, items):
    before = db_state(items)
    assert_problem(bulk(reader, "insert", [{"key": "a", "data": {}}]), 403, "forbidden")
    assert db_state(items) == before

    assert bulk(writer, "insert", [{"key": "a", "data": {}}]).status_code == 201
    assert Record.objects.get(key="a").created_by == "service:writer"
