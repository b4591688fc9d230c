"""change_stream: every record write appends record.created/updated/deleted in the write's transaction."""

import uuid

import pytest
from django.db import transaction
from django.urls import reverse

from core import services
from core.models import Collection, Event, Record
from tests.actors import TEST_ACTOR
from tests.core.records_support import (
    assert_problem,
    bulk_url,
    db_state,
    error_paths,
    if_match,
    record_url,
    records_url,
    revert_url,
)
from tests.core.streams_support import last_offset, make_stream
from tests.schemas.schema_support import make_schema, obj

pytestmark = pytest.mark.django_db

PERSON = obj({"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}, ["name"])


@pytest.fixture
def changes(owner):
    """The stream `changes` of owner."""
    return make_stream(owner.service, "changes")


@pytest.fixture
def tracked(items, changes):
    """`items` (owner's, writable by writer) with `changes` as its change stream."""
    return services.collection_update(collection=items, change_stream=changes, actor=TEST_ACTOR)


def change_events(stream) -> list[tuple]:
    """(offset, type, data, producer) of every event of stream, by offset."""
    return list(
        Event.objects.filter(stream=stream)
        .order_by("offset")
        .values_list("offset", "type", "data", "producer")
    )


def change(offset: int, kind: str, key: str, version: int, data: dict, producer="service:writer") -> tuple:
    """The event a write of record key (at version, with data) of `items` appends."""
    return (
        offset,
        f"record.{kind}",
        {"collection": "items", "key": key, "version": version, "data": data},
        producer,
    )


def seed(collection, records: dict) -> None:
    """Records written through the service before the test's own writes (their events included)."""
    for key, data in records.items():
        services.record_create(collection=collection, key=key, data=data, actor=TEST_ACTOR)


# --- setting a change stream ----------------------------------------------------------------------


def test_a_records_collection_is_created_with_a_change_stream(owner, changes):
    response = owner.post(
        reverse("collection-list"), {"name": "orders", "change_stream": "changes"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["change_stream"] == "changes"
    assert Collection.objects.get(name="orders").change_stream == changes


def test_the_change_stream_is_set_and_unset_by_patch(owner, items, changes):
    url = reverse("collection-detail", args=["items"])

    set_ = owner.patch(url, {"change_stream": "changes"}, format="json")
    assert set_.status_code == 200, set_.content
    assert set_.json()["change_stream"] == "changes"
    assert Collection.objects.get(name="items").change_stream_id == changes.pk

    unset = owner.patch(url, {"change_stream": None}, format="json")
    assert unset.status_code == 200
    assert unset.json()["change_stream"] is None
    assert Collection.objects.get(name="items").change_stream_id is None


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("items", "invalid_change_stream"),  # a records collection
        ("foreign", "invalid_change_stream"),  # a stream of another service
        ("nowhere", "invalid_change_stream"),  # no such collection
    ],
)
def test_a_change_stream_must_be_a_stream_of_the_same_owner(owner, writer, items, target, code):
    make_stream(writer.service, "foreign")
    url = reverse("collection-detail", args=["items"])

    created = owner.post(
        reverse("collection-list"), {"name": "orders", "change_stream": target}, format="json"
    )
    patched = owner.patch(url, {"change_stream": target}, format="json")

    assert error_paths(assert_problem(created, 422, code)) == ["/change_stream"]
    assert error_paths(assert_problem(patched, 422, code)) == ["/change_stream"]
    assert not Collection.objects.filter(name="orders").exists()
    assert Collection.objects.get(name="items").change_stream_id is None


def test_another_services_stream_is_refused_exactly_like_a_name_that_does_not_exist(owner, writer, items):
    """Naming another service's stream must not tell that it exists (docs/isolation.md)."""
    make_stream(writer.service, "foreign")
    url = reverse("collection-detail", args=["items"])

    foreign = owner.patch(url, {"change_stream": "foreign"}, format="json").json()
    nowhere = owner.patch(url, {"change_stream": "nowhere"}, format="json").json()

    assert foreign["code"] == nowhere["code"] == "invalid_change_stream"
    assert foreign["detail"].replace("foreign", "nowhere") == nowhere["detail"]
    assert foreign["errors"] == nowhere["errors"]


def test_a_new_stream_naming_a_change_stream_is_refused_alike_whether_the_name_exists(owner, writer):
    """The kind is checked before the name is looked up: existence must not change the answer."""
    make_stream(writer.service, "foreign")

    def create(name: str, target: str) -> dict:
        body = {"name": name, "kind": "stream", "change_stream": target}
        return owner.post(reverse("collection-list"), body, format="json").json()

    foreign, nowhere = create("one", "foreign"), create("two", "nowhere")

    assert foreign["code"] == nowhere["code"] == "change_stream_on_stream"
    assert foreign == nowhere
    assert not Collection.objects.filter(name__in=["one", "two"]).exists()


def test_a_stream_cannot_have_a_change_stream(owner, changes):
    created = owner.post(
        reverse("collection-list"),
        {"name": "more", "kind": "stream", "change_stream": "changes"},
        format="json",
    )
    patched = owner.patch(
        reverse("collection-detail", args=["changes"]), {"change_stream": "changes"}, format="json"
    )

    assert error_paths(assert_problem(created, 422, "change_stream_on_stream")) == ["/change_stream"]
    assert error_paths(assert_problem(patched, 422, "change_stream_on_stream")) == ["/change_stream"]
    assert not Collection.objects.filter(name="more").exists()
    assert Collection.objects.get(name="changes").change_stream_id is None


def test_only_the_owner_or_an_operator_sets_the_change_stream(writer, items, changes):
    response = writer.patch(
        reverse("collection-detail", args=["items"]), {"change_stream": "changes"}, format="json"
    )

    assert_problem(response, 403, "forbidden")
    assert Collection.objects.get(name="items").change_stream_id is None


# --- one event per write --------------------------------------------------------------------------


def test_create_appends_record_created(writer, tracked, changes):
    response = writer.post(records_url(), {"key": "a", "data": {"n": 1}}, format="json")

    assert response.status_code == 201, response.content
    assert change_events(changes) == [change(1, "created", "a", 1, {"n": 1})]
    assert last_offset(changes) == 1


def test_create_with_a_generated_key_names_that_key(writer, tracked, changes):
    response = writer.post(records_url(), {"data": {"n": 1}}, format="json")

    assert response.status_code == 201
    assert change_events(changes) == [change(1, "created", response.json()["key"], 1, {"n": 1})]


def test_put_appends_record_created_then_record_updated(writer, tracked, changes):
    created = writer.put(record_url("a"), {"data": {"n": 1}}, format="json")
    replaced = writer.put(record_url("a"), {"data": {"n": 2}}, format="json", **if_match(1))

    assert (created.status_code, replaced.status_code) == (201, 200)
    assert change_events(changes) == [
        change(1, "created", "a", 1, {"n": 1}),
        change(2, "updated", "a", 2, {"n": 2}),
    ]


def test_patch_appends_record_updated_with_the_merged_data(writer, tracked, changes):
    seed(tracked, {"a": {"n": 1, "keep": True, "drop": 0}})

    response = writer.patch(record_url("a"), {"data": {"n": 2, "drop": None}}, format="json")

    assert response.status_code == 200, response.content
    assert change_events(changes) == [
        change(1, "created", "a", 1, {"n": 1, "keep": True, "drop": 0}, producer="command:tests"),
        change(2, "updated", "a", 2, {"n": 2, "keep": True}),
    ]


def test_delete_appends_record_deleted_with_the_last_data_and_the_deletion_version(writer, tracked, changes):
    seed(tracked, {"a": {"n": 1}})
    writer.patch(record_url("a"), {"data": {"n": 2}}, format="json")

    response = writer.delete(record_url("a"))

    assert response.status_code == 204
    assert change_events(changes)[1:] == [
        change(2, "updated", "a", 2, {"n": 2}),
        change(3, "deleted", "a", 3, {"n": 2}),
    ]
    assert not Record.objects.filter(collection=tracked).exists()


def test_bulk_insert_appends_one_event_per_record_in_request_order(writer, tracked, changes):
    records = [{"key": "c", "data": {"i": 0}}, {"key": "a", "data": {"i": 1}}, {"key": "b", "data": {"i": 2}}]

    response = writer.post(bulk_url(), {"mode": "insert", "records": records}, format="json")

    assert response.status_code == 201, response.content
    assert change_events(changes) == [
        change(1, "created", "c", 1, {"i": 0}),
        change(2, "created", "a", 1, {"i": 1}),
        change(3, "created", "b", 1, {"i": 2}),
    ]


def test_bulk_upsert_appends_created_and_updated_events_in_request_order(writer, tracked, changes):
    seed(tracked, {"b": {"old": 1}, "d": {"old": 2}})
    records = [
        {"key": "d", "data": {"new": 0}},
        {"key": "a", "data": {"new": 1}},
        {"key": "b", "data": {"new": 2}},
        {"key": "c", "data": {"new": 3}},
    ]

    response = writer.post(bulk_url(), {"mode": "upsert", "records": records}, format="json")

    assert response.status_code == 200, response.content
    assert change_events(changes)[2:] == [
        change(3, "updated", "d", 2, {"new": 0}),
        change(4, "created", "a", 1, {"new": 1}),
        change(5, "updated", "b", 2, {"new": 2}),
        change(6, "created", "c", 1, {"new": 3}),
    ]


def test_bulk_with_generated_keys_names_each_key(writer, tracked, changes):
    response = writer.post(
        bulk_url(), {"mode": "insert", "records": [{"data": {"i": i}} for i in range(3)]}, format="json"
    )

    keys = [item["key"] for item in response.json()["results"]]
    assert change_events(changes) == [
        change(i + 1, "created", key, 1, {"i": i}) for i, key in enumerate(keys)
    ]


def test_revert_appends_record_updated_with_the_old_data(writer, tracked, changes):
    seed(tracked, {"a": {"n": 1}})
    writer.put(record_url("a"), {"data": {"n": 2}}, format="json")

    response = writer.post(revert_url("a"), {"version": 1}, format="json")

    assert response.status_code == 200, response.content
    assert change_events(changes)[1:] == [
        change(2, "updated", "a", 2, {"n": 2}),
        change(3, "updated", "a", 3, {"n": 1}),
    ]


def test_revert_of_a_deleted_record_appends_record_created(writer, tracked, changes):
    seed(tracked, {"a": {"n": 1}})
    writer.delete(record_url("a"))

    response = writer.post(revert_url("a"), {"version": 1}, format="json")

    assert response.status_code == 201, response.content
    assert change_events(changes)[1:] == [
        change(2, "deleted", "a", 2, {"n": 1}),
        change(3, "created", "a", 3, {"n": 1}),
    ]


def test_a_forced_collection_delete_by_an_operator_appends_record_deleted_for_every_record(
    operator, tracked, changes
):
    seed(tracked, {"b": {"n": 2}, "a": {"n": 1}, "c": {"n": 3}})

    response = operator.delete(reverse("collection-detail", args=["items"]))

    assert response.status_code == 204, response.content
    assert not Collection.objects.filter(name="items").exists()
    assert change_events(changes)[3:] == [
        change(4, "deleted", "a", 2, {"n": 1}, producer="operator:alice"),
        change(5, "deleted", "b", 2, {"n": 2}, producer="operator:alice"),
        change(6, "deleted", "c", 2, {"n": 3}, producer="operator:alice"),
    ]
    assert last_offset(changes) == 6


def test_every_kind_of_write_in_turn_gets_gapless_offsets_and_distinct_event_ids(writer, tracked, changes):
    writer.post(records_url(), {"key": "a", "data": {"n": 1}}, format="json")
    writer.put(record_url("b"), {"data": {"n": 1}}, format="json")
    writer.patch(record_url("a"), {"data": {"n": 2}}, format="json")
    writer.post(
        bulk_url(),
        {"mode": "upsert", "records": [{"key": "a", "data": {"n": 3}}, {"key": "c", "data": {}}]},
        format="json",
    )
    writer.delete(record_url("b"))
    writer.post(revert_url("b"), {"version": 1}, format="json")

    events = Event.objects.filter(stream=changes).order_by("offset")
    assert [(e.offset, e.type, e.data["key"], e.data["version"]) for e in events] == [
        (1, "record.created", "a", 1),
        (2, "record.created", "b", 1),
        (3, "record.updated", "a", 2),
        (4, "record.updated", "a", 3),
        (5, "record.created", "c", 1),
        (6, "record.deleted", "b", 2),
        (7, "record.created", "b", 3),
    ]
    assert len({e.event_id for e in events}) == 7
    assert last_offset(changes) == 7


def test_the_change_events_are_readable_through_the_events_api(owner, writer, tracked):
    writer.post(records_url(), {"key": "a", "data": {"n": 1}}, format="json")

    body = owner.get(reverse("event-list", args=["changes"])).json()

    assert [(e["offset"], e["type"], e["data"], e["producer"]) for e in body["results"]] == [
        (
            1,
            "record.created",
            {"collection": "items", "key": "a", "version": 1, "data": {"n": 1}},
            "service:writer",
        )
    ]
    assert uuid.UUID(body["results"][0]["id"])


def test_without_a_change_stream_writes_append_nothing(owner, writer, tracked, changes):
    owner.patch(reverse("collection-detail", args=["items"]), {"change_stream": None}, format="json")

    writer.post(records_url(), {"key": "a", "data": {}}, format="json")
    writer.post(bulk_url(), {"mode": "upsert", "records": [{"key": "b", "data": {}}]}, format="json")
    writer.delete(record_url("a"))

    assert Record.objects.filter(collection=tracked).count() == 1
    assert change_events(changes) == []


def test_a_write_rolled_back_after_the_service_returned_leaves_no_event(tracked, changes):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_create(collection=tracked, key="a", data={"n": 1}, actor=TEST_ACTOR)
        assert Event.objects.filter(stream=changes).count() == 1  # appended in the write's transaction
        raise RuntimeError("the surrounding transaction fails")

    assert not Record.objects.filter(collection=tracked).exists()
    assert change_events(changes) == []
    assert last_offset(changes) == 0


# --- failed writes leave no event -----------------------------------------------------------------


@pytest.fixture
def bound(owner, tracked):
    """`items` with its change stream and the schema `person`, holding ann (version 1)."""
    schema = make_schema(owner.service, "person", PERSON)
    collection = services.collection_update(collection=tracked, schema=schema, actor=TEST_ACTOR)
    seed(collection, {"ann": {"name": "Ann", "age": 3}})
    return collection


FAILED_WRITES = [
    # (description, method, url, body, headers, status, code)
    (
        "create of an existing key",
        "post",
        records_url(),
        {"key": "ann", "data": {"name": "A"}},
        {},
        409,
        "record_exists",
    ),
    (
        "create against the schema",
        "post",
        records_url(),
        {"key": "bob", "data": {"name": 5}},
        {},
        422,
        "schema_validation_failed",
    ),
    ("create with data not an object", "post", records_url(), {"key": "bob", "data": [1]}, {}, 422, None),
    ("put with a stale If-Match", "put", record_url("ann"), {"data": {"name": "A"}}, if_match(7), 412, None),
    (
        "put with If-None-Match on an existing record",
        "put",
        record_url("ann"),
        {"data": {"name": "A"}},
        {"HTTP_IF_NONE_MATCH": "*"},
        412,
        None,
    ),
    (
        "put against the schema",
        "put",
        record_url("ann"),
        {"data": {"age": -1}},
        {},
        422,
        "schema_validation_failed",
    ),
    (
        "patch against the schema",
        "patch",
        record_url("ann"),
        {"data": {"age": "old"}},
        {},
        422,
        "schema_validation_failed",
    ),
    ("patch with a stale If-Match", "patch", record_url("ann"), {"data": {"age": 4}}, if_match(2), 412, None),
    (
        "patch of a missing record",
        "patch",
        record_url("zed"),
        {"data": {"age": 4}},
        {},
        404,
        "record_not_found",
    ),
    ("delete with a stale If-Match", "delete", record_url("ann"), None, if_match(2), 412, None),
    ("delete of a missing record", "delete", record_url("zed"), None, {}, 404, "record_not_found"),
    (
        "bulk insert with one invalid item",
        "post",
        bulk_url(),
        {"mode": "insert", "records": [{"key": "b1", "data": {"name": "B"}}, {"key": "b2", "data": 3}]},
        {},
        422,
        None,
    ),
    (
        "bulk upsert with one item against the schema",
        "post",
        bulk_url(),
        {
            "mode": "upsert",
            "records": [{"key": "b1", "data": {"name": "B"}}, {"key": "b2", "data": {"age": 1}}],
        },
        {},
        422,
        "schema_validation_failed",
    ),
    (
        "bulk insert of an existing key",
        "post",
        bulk_url(),
        {
            "mode": "insert",
            "records": [{"key": "b1", "data": {"name": "B"}}, {"key": "ann", "data": {"name": "A"}}],
        },
        {},
        409,
        "record_exists",
    ),
    ("revert with a stale If-Match", "post", revert_url("ann"), {"version": 1}, if_match(5), 412, None),
    ("revert to an unknown version", "post", revert_url("ann"), {"version": 9}, {}, 404, "version_not_found"),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "headers", "status", "code"),
    [case[1:] for case in FAILED_WRITES],
    ids=[case[0] for case in FAILED_WRITES],
)
def test_a_failed_write_leaves_no_change_event(
    writer, bound, changes, method, url, body, headers, status, code
):
    events_before, records_before = change_events(changes), db_state(bound)
    assert len(events_before) == 1

    response = getattr(writer, method)(url, body, format="json", **headers)

    assert_problem(response, status, code)
    assert change_events(changes) == events_before
    assert last_offset(changes) == 1
    assert db_state(bound) == records_before


def test_a_write_refused_for_missing_if_match_leaves_no_change_event(owner, writer, tracked, changes):
    seed(tracked, {"a": {"n": 1}})
    owner.patch(reverse("collection-detail", args=["items"]), {"require_if_match": True}, format="json")
    before = change_events(changes)

    assert_problem(writer.put(record_url("a"), {"data": {"n": 2}}, format="json"), 428)
    assert_problem(writer.delete(record_url("a")), 428)
    assert_problem(
        writer.post(bulk_url(), {"mode": "upsert", "records": [{"key": "a", "data": {}}]}, format="json"), 428
    )
    assert change_events(changes) == before


def test_a_write_by_a_reader_is_a_403_and_leaves_no_change_event(reader, tracked, changes):
    assert_problem(reader.post(records_url(), {"key": "a", "data": {}}, format="json"), 403)
    assert change_events(changes) == []


# --- the stream of a collection -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "operator"])
def test_a_stream_in_use_as_a_change_stream_cannot_be_deleted(request, tracked, changes, who):
    client = request.getfixturevalue(who)

    response = client.delete(reverse("collection-detail", args=["changes"]))

    body = assert_problem(response, 409, "stream_in_use")
    assert "items" in body["detail"]
    assert Collection.objects.filter(name="changes").exists()


def test_a_stream_no_longer_in_use_can_be_deleted(owner, tracked, changes):
    owner.patch(reverse("collection-detail", args=["items"]), {"change_stream": None}, format="json")

    response = owner.delete(reverse("collection-detail", args=["changes"]))

    assert response.status_code == 204, response.content
    assert not Collection.objects.filter(name="changes").exists()
