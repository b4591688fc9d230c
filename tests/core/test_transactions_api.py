"""POST /api/v1/transactions/: record and event operations across collections, all or nothing."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient
from reversion.models import Revision, Version

from core import services
from core.models import Collection, CollectionKind, Event, Record, RecordTombstone
from tests.actors import TEST_ACTOR
from tests.core.records_support import assert_problem, error_paths, history_versions
from tests.core.streams_support import event, make_stream
from tests.schemas.schema_support import STRING, make_schema, obj

pytestmark = pytest.mark.django_db

PERSON = obj({"name": STRING, "age": {"type": "integer", "minimum": 0}}, ["name"], closed=True)


def transactions_url() -> str:
    return reverse("transaction-list")


def post(client, operations, **extra):
    return client.post(transactions_url(), {"operations": operations}, format="json", **extra)


@pytest.fixture
def world(owner, writer, reader, items):
    """Collections of owner that writer may write, with records and events, and two it may not.

    items (change stream `changes`): a {"n": 1} v1, b {"n": 2} v3; notes: n1 v1; people (bound to
    PERSON): ada v1; strict (require_if_match): s v1; events (a stream): offsets 1 and 2;
    shared (writer may only read): x; private (no grant): y.
    """
    write = {"writer": "write"}

    def records(name, grants=write, **options):
        collection = services.collection_create(actor=TEST_ACTOR, name=name, owner=owner.service, **options)
        for service_name, access in grants.items():
            services.grant_set(
                actor=TEST_ACTOR, collection=collection, service_name=service_name, access=access
            )
        return collection

    changes = make_stream(owner.service, "changes")
    services.collection_update(collection=items, change_stream=changes, actor=TEST_ACTOR)
    notes = records("notes")
    people = records("people", schema=make_schema(owner.service, "person", PERSON))
    strict = records("strict", require_if_match=True)
    shared = records("shared", grants={"writer": "read"})
    private = records("private", grants={})
    stream = make_stream(owner.service, "events", writers=("writer",))
    for collection, key, data in [
        (items, "a", {"n": 1}),
        (items, "b", {"n": 0}),
        (notes, "n1", {"text": "hello"}),
        (people, "ada", {"name": "Ada", "age": 36}),
        (strict, "s", {"n": 0}),
        (shared, "x", {}),
        (private, "y", {}),
    ]:
        services.record_create(collection=collection, key=key, data=data, actor=TEST_ACTOR)
    for n in (1, 2):
        services.record_put(collection=items, key="b", data={"n": n}, actor=TEST_ACTOR)
    services.stream_append(stream=stream, events=[event(), event()], actor=TEST_ACTOR)
    return {"changes": changes, "items": items, "notes": notes, "people": people, "strict": strict}


def everything() -> dict:
    """Every row a transaction could write: records, tombstones, history, events and stream offsets."""
    return {
        "records": list(
            Record.objects.order_by("collection__name", "key").values_list(
                "collection__name", "key", "version", "data", "schema_version", "updated_at", "updated_by"
            )
        ),
        "tombstones": list(RecordTombstone.objects.order_by("pk").values_list("pk", "version")),
        "revisions": list(Revision.objects.order_by("pk").values_list("pk", flat=True)),
        "versions": list(Version.objects.order_by("pk").values_list("pk", flat=True)),
        "events": list(
            Event.objects.order_by("stream__name", "offset").values_list(
                "stream__name", "offset", "event_id", "type", "data"
            )
        ),
        "last_offsets": dict(
            Collection.objects.filter(kind=CollectionKind.STREAM).values_list("name", "last_offset")
        ),
    }


def stored(name: str, key: str) -> tuple:
    """(version, data) of a stored record."""
    return Record.objects.values_list("version", "data").get(collection__name=name, key=key)


def change_events() -> list[tuple]:
    """(type, key, version) of the events the change stream of `items` received, by offset."""
    rows = Event.objects.filter(stream__name="changes").order_by("offset").values_list("type", "data")
    return [(event_type, data["key"], data["version"]) for event_type, data in rows]


def assert_refused_at(response, index: int, status: int, code: str) -> dict:
    """A problem naming operation index, with every error path inside that operation."""
    body = assert_problem(response, status, code)
    assert body["operation"] == index, body
    assert "index" not in body
    assert body["detail"].startswith(f"Operation {index}: ")
    for path in error_paths(body):
        assert path == f"/operations/{index}" or path.startswith(f"/operations/{index}/"), body
    return body


# --- success ---------------------------------------------------------------------------------------


def test_every_operation_across_collections_is_applied_in_order(writer, world):
    first, second = event("order.placed", {"id": 1}), event("order.paid", {"id": 1})
    changes_before = len(change_events())
    operations = [
        {"op": "create", "collection": "items", "key": "c", "data": {"n": 3}},
        {"op": "create", "collection": "notes", "data": {"text": "a generated key"}},
        {"op": "put", "collection": "items", "key": "d", "data": {"n": 4}},
        {"op": "put", "collection": "items", "key": "b", "data": {"n": 20}, "if_match": 3},
        {"op": "patch", "collection": "people", "key": "ada", "data": {"age": 37}, "if_match": '"1"'},
        {"op": "delete", "collection": "notes", "key": "n1", "if_match": "*"},
        {"op": "append", "collection": "events", "events": [first, second], "expected_last_offset": 2},
        {"op": "patch", "collection": "strict", "key": "s", "data": {"n": 1}, "if_match": 1},
    ]

    response = post(writer, operations)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    generated = results[1]["key"]
    assert str(uuid.UUID(generated)) == generated
    assert results == [
        {"op": "create", "collection": "items", "key": "c", "version": 1, "created": True},
        {"op": "create", "collection": "notes", "key": generated, "version": 1, "created": True},
        {"op": "put", "collection": "items", "key": "d", "version": 1, "created": True},
        {"op": "put", "collection": "items", "key": "b", "version": 4, "created": False},
        {"op": "patch", "collection": "people", "key": "ada", "version": 2, "created": False},
        {"op": "delete", "collection": "notes", "key": "n1", "deleted": True},
        {
            "op": "append",
            "collection": "events",
            "first_offset": 3,
            "last_offset": 4,
            "events": [
                {"id": first["id"], "offset": 3, "duplicate": False},
                {"id": second["id"], "offset": 4, "duplicate": False},
            ],
        },
        {"op": "patch", "collection": "strict", "key": "s", "version": 2, "created": False},
    ]
    assert stored("items", "c") == (1, {"n": 3})
    assert stored("notes", generated) == (1, {"text": "a generated key"})
    assert stored("items", "d") == (1, {"n": 4})
    assert stored("items", "b") == (4, {"n": 20})
    assert stored("people", "ada") == (2, {"name": "Ada", "age": 37})
    assert Record.objects.get(collection__name="people", key="ada").schema_version == 1
    assert not Record.objects.filter(collection__name="notes", key="n1").exists()
    assert RecordTombstone.objects.get(collection__name="notes", key="n1").version == 2
    assert stored("strict", "s") == (2, {"n": 1})
    assert list(
        Event.objects.filter(stream__name="events", offset__gt=2)
        .order_by("offset")
        .values_list("offset", "type", "producer")
    ) == [(3, "order.placed", "service:writer"), (4, "order.paid", "service:writer")]
    assert Collection.objects.get(name="events").last_offset == 4
    assert change_events()[changes_before:] == [
        ("record.created", "c", 1),
        ("record.created", "d", 1),
        ("record.updated", "b", 4),
    ]


def test_each_record_operation_writes_its_own_history_version(writer, world):
    last_revision = Revision.objects.order_by("pk").last().pk
    operations = [
        {"op": "create", "collection": "items", "key": "c", "data": {"n": 3}},
        {"op": "put", "collection": "items", "key": "b", "data": {"n": 20}},
        {"op": "patch", "collection": "people", "key": "ada", "data": {"age": 37}},
        {"op": "delete", "collection": "notes", "key": "n1"},
        {"op": "append", "collection": "events", "events": [event()]},
    ]

    response = post(writer, operations, HTTP_X_REQUEST_ID="tx-history-1")

    assert response.status_code == 200, response.content
    written = Revision.objects.filter(pk__gt=last_revision).order_by("pk")
    assert list(written.values_list("comment", "write_meta__actor", "write_meta__request_id")) == [
        ("created", "service:writer", "tx-history-1"),
        ("replaced", "service:writer", "tx-history-1"),
        ("patched", "service:writer", "tx-history-1"),
        ("deleted", "service:writer", "tx-history-1"),
    ]
    assert history_versions(world["items"], "c") == [1]
    assert history_versions(world["items"], "b") == [1, 2, 3, 4]
    assert history_versions(world["people"], "ada") == [1, 2]
    assert history_versions(world["notes"], "n1") == [1, 2]
    history = writer.get(reverse("record-history", args=["notes", "n1"])).json()["results"]
    assert [(entry["version"], entry["deleted"], entry["changed_by"]) for entry in history] == [
        (2, True, "service:writer"),
        (1, False, "command:tests"),
    ]


def test_later_operations_see_the_earlier_ones(writer, world):
    changes_before = len(change_events())
    operations = [
        {"op": "create", "collection": "items", "key": "z", "data": {"step": 1}},
        {"op": "patch", "collection": "items", "key": "z", "data": {"patched": True}, "if_match": 1},
        {"op": "put", "collection": "items", "key": "z", "data": {"step": 3}, "if_match": '"2"'},
        {"op": "delete", "collection": "items", "key": "z", "if_match": 3},
        {"op": "put", "collection": "items", "key": "z", "data": {"step": 5}},
        {"op": "append", "collection": "events", "events": [event()], "expected_last_offset": 2},
        {"op": "append", "collection": "events", "events": [event()], "expected_last_offset": 3},
    ]

    response = post(writer, operations)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result.get("version") for result in results[:5]] == [1, 2, 3, None, 5]
    assert [result.get("created") for result in results[:5]] == [True, False, False, None, True]
    assert [result["last_offset"] for result in results[5:]] == [3, 4]
    assert stored("items", "z") == (5, {"step": 5})
    assert history_versions(world["items"], "z") == [1, 2, 3, 4, 5]
    assert change_events()[changes_before:] == [
        ("record.created", "z", 1),
        ("record.updated", "z", 2),
        ("record.updated", "z", 3),
        ("record.deleted", "z", 4),
        ("record.created", "z", 5),
    ]


@pytest.mark.parametrize("if_match", [3, "3", '"3"', "*", None])
def test_if_match_accepts_a_version_an_etag_or_a_star(writer, world, if_match):
    operation = {"op": "patch", "collection": "items", "key": "b", "data": {"n": 30}}
    if if_match is not None:
        operation["if_match"] = if_match

    response = post(writer, [operation])

    assert response.status_code == 200, response.content
    assert stored("items", "b") == (4, {"n": 30})


# --- all or nothing --------------------------------------------------------------------------------

# Valid operations on several collections; each failure case is inserted among them at its index.
VALID = [
    {"op": "create", "collection": "items", "key": "new", "data": {"n": 9}},
    {"op": "append", "collection": "events", "events": [{"type": "t", "data": {}}]},
    {"op": "patch", "collection": "people", "key": "ada", "data": {"age": 40}},
    {"op": "delete", "collection": "notes", "key": "n1"},
    {"op": "put", "collection": "strict", "key": "s", "data": {"n": 5}, "if_match": 1},
]

FAILURES = [
    # index, failing operation, status, code, error paths inside the operation
    pytest.param(
        0,
        {"op": "create", "collection": "nope", "data": {}},
        404,
        "collection_not_found",
        [],
        id="unknown collection",
    ),
    pytest.param(
        3,
        {"op": "delete", "collection": "private", "key": "y"},
        404,
        "collection_not_found",
        [],
        id="invisible collection",
    ),
    pytest.param(
        2,
        {"op": "put", "collection": "shared", "key": "x", "data": {}},
        403,
        "forbidden",
        [],
        id="read-only grant",
    ),
    pytest.param(
        1,
        {"op": "append", "collection": "items", "events": [{"type": "t", "data": {}}]},
        404,
        "not_a_stream",
        [],
        id="append to records",
    ),
    pytest.param(
        4,
        {"op": "create", "collection": "events", "data": {}},
        404,
        "not_a_records_collection",
        [],
        id="record op on a stream",
    ),
    pytest.param(
        5,
        {"op": "create", "collection": "items", "key": "a", "data": {}},
        409,
        "record_exists",
        [],
        id="existing key",
    ),
    pytest.param(
        4,
        {"op": "put", "collection": "items", "key": "b", "data": {}, "if_match": 2},
        412,
        "precondition_failed",
        [],
        id="if_match mismatch",
    ),
    pytest.param(
        1,
        {"op": "patch", "collection": "items", "key": "ghost", "data": {}, "if_match": "*"},
        412,
        "precondition_failed",
        [],
        id="if_match on a missing record",
    ),
    pytest.param(
        2,
        {"op": "patch", "collection": "items", "key": "ghost", "data": {}},
        404,
        "record_not_found",
        [],
        id="patch of a missing record",
    ),
    pytest.param(
        3,
        {"op": "delete", "collection": "items", "key": "ghost"},
        404,
        "record_not_found",
        [],
        id="delete of a missing record",
    ),
    pytest.param(
        5,
        {"op": "delete", "collection": "strict", "key": "s"},
        428,
        "if_match_required",
        [],
        id="require_if_match",
    ),
    pytest.param(
        2,
        {"op": "create", "collection": "notes", "data": [1, 2]},
        422,
        "validation_failed",
        ["/data"],
        id="data not an object",
    ),
    pytest.param(
        3,
        {"op": "patch", "collection": "items", "key": "a", "data": "x"},
        422,
        "validation_failed",
        ["/data"],
        id="patch not an object",
    ),
    pytest.param(
        1,
        {"op": "put", "collection": "notes", "key": "n2", "data": {"t": "a\u0000b"}},
        422,
        None,
        ["/data/t"],
        id="data jsonb cannot hold",
    ),
    pytest.param(
        4,
        {"op": "create", "collection": "people", "key": "bob", "data": {"name": "Bob", "age": -1}},
        422,
        "schema_validation_failed",
        ["/data/age"],
        id="schema validation",
    ),
    pytest.param(
        5,
        {"op": "patch", "collection": "people", "key": "ada", "data": {"extra": 1}},
        422,
        "schema_validation_failed",
        ["/data"],
        id="schema validation after patch",
    ),
    pytest.param(
        0,
        {"op": "put", "collection": "items", "key": "a", "data": {}, "colour": "red"},
        422,
        "validation_failed",
        ["/colour"],
        id="unknown field",
    ),
    pytest.param(
        3,
        {"op": "create", "collection": "items", "data": {}, "if_match": 1},
        422,
        "validation_failed",
        ["/if_match"],
        id="field of another op",
    ),
    pytest.param(
        2,
        {"op": "put", "collection": "items", "data": {}},
        422,
        "validation_failed",
        ["/key"],
        id="missing field",
    ),
    pytest.param(
        1,
        {"op": "upsert", "collection": "items", "key": "a", "data": {}},
        422,
        "validation_failed",
        ["/op"],
        id="unknown op",
    ),
    pytest.param(4, "create", 422, "validation_failed", [""], id="operation not an object"),
    pytest.param(
        3,
        {"op": "create", "collection": ["items"], "data": {}},
        422,
        "validation_failed",
        ["/collection"],
        id="collection not a name",
    ),
    pytest.param(
        1,
        {"op": "create", "collection": "it\u0000ems", "data": {}},
        422,
        "validation_failed",
        ["/collection"],
        id="NUL in a collection name",
    ),
    pytest.param(
        2,
        {"op": "patch", "collection": "items", "key": "a\u0000", "data": {}},
        422,
        "invalid_key",
        ["/key"],
        id="NUL in a key",
    ),
    pytest.param(
        3,
        {"op": "delete", "collection": "items", "key": 5},
        422,
        "invalid_key",
        ["/key"],
        id="key not a string",
    ),
    pytest.param(
        2,
        {"op": "create", "collection": "items", "key": "with space", "data": {}},
        422,
        "invalid_key",
        ["/key"],
        id="invalid key",
    ),
    pytest.param(
        1,
        {"op": "patch", "collection": "items", "key": "a", "data": {}, "if_match": 'W/"1"'},
        422,
        "validation_failed",
        ["/if_match"],
        id="invalid if_match",
    ),
    pytest.param(
        5,
        {"op": "append", "collection": "events", "events": [{"data": {}}]},
        422,
        "validation_failed",
        ["/events/0/type"],
        id="invalid event",
    ),
    pytest.param(
        0,
        {"op": "append", "collection": "events", "events": []},
        422,
        "validation_failed",
        ["/events"],
        id="no events",
    ),
    pytest.param(
        1,
        {
            "op": "append",
            "collection": "events",
            "events": [{"type": "t", "data": {}}],
            "expected_last_offset": 1,
        },
        409,
        "unexpected_last_offset",
        [],
        id="expected_last_offset",
    ),
    pytest.param(
        3,
        {"op": "create", "collection": "notes", "data": {"blob": "x" * (1024 * 1024)}},
        413,
        "record_too_large",
        ["/data"],
        id="record too large",
    ),
]


@pytest.mark.parametrize("index, failing, status, code, paths", FAILURES)
def test_a_failing_operation_is_named_and_nothing_is_applied(
    writer, world, index, failing, status, code, paths
):
    before = everything()

    response = post(writer, [*VALID[:index], failing, *VALID[index:]])

    body = assert_refused_at(response, index, status, code)
    assert error_paths(body)[: len(paths)] == [f"/operations/{index}{path}" for path in paths]
    assert everything() == before


def test_a_failed_precondition_reports_the_current_version(writer, world):
    response = post(
        writer, [VALID[0], {"op": "put", "collection": "items", "key": "b", "data": {}, "if_match": 2}]
    )

    assert assert_refused_at(response, 1, 412, "precondition_failed")["current_version"] == 3


def test_an_unexpected_last_offset_reports_the_actual_one(writer, world):
    operations = [
        {"op": "append", "collection": "events", "events": [event()]},
        {"op": "append", "collection": "events", "events": [event()], "expected_last_offset": 2},
    ]
    before = everything()

    response = post(writer, operations)

    assert assert_refused_at(response, 1, 409, "unexpected_last_offset")["last_offset"] == 3
    assert everything() == before


def stored_event(offset: int) -> dict:
    """The event at offset of the stream `events`, as a producer would send it again."""
    found = Event.objects.get(stream__name="events", offset=offset)
    return {"id": str(found.event_id), "type": found.type, "data": found.data}


def test_an_append_reusing_an_event_id_with_other_data_is_a_409_at_its_operation(writer, world):
    operations = [
        {"op": "create", "collection": "items", "key": "c", "data": {"n": 3}},
        {"op": "append", "collection": "events", "events": [{**stored_event(2), "data": {"changed": True}}]},
    ]
    before = everything()

    response = post(writer, operations)

    body = assert_refused_at(response, 1, 409, "event_id_conflict")
    assert error_paths(body) == ["/operations/1/events/0/id"]
    assert body["offset"] == 2
    assert everything() == before


def test_an_event_id_reused_with_other_data_by_a_later_append_of_the_transaction_is_a_409(writer, world):
    sent = event("order.placed", {"n": 1})
    operations = [
        {"op": "append", "collection": "events", "events": [sent]},
        {"op": "append", "collection": "events", "events": [event(), {**sent, "type": "order.paid"}]},
    ]
    before = everything()

    response = post(writer, operations)

    body = assert_refused_at(response, 1, 409, "event_id_conflict")
    assert error_paths(body) == ["/operations/1/events/1/id"]
    assert everything() == before


def test_an_append_of_events_already_in_the_stream_marks_them_duplicate_without_offsets(writer, world):
    again = [stored_event(1), stored_event(2)]
    fresh = event("order.placed")
    before = everything()

    response = post(
        writer,
        [
            {"op": "append", "collection": "events", "events": again},
            {"op": "append", "collection": "events", "events": [again[1], fresh]},
        ],
    )

    assert response.status_code == 200, response.content
    assert response.json()["results"] == [
        {
            "op": "append",
            "collection": "events",
            "first_offset": None,
            "last_offset": None,
            "events": [
                {"id": again[0]["id"], "offset": 1, "duplicate": True},
                {"id": again[1]["id"], "offset": 2, "duplicate": True},
            ],
        },
        {
            "op": "append",
            "collection": "events",
            "first_offset": 3,
            "last_offset": 3,
            "events": [
                {"id": again[1]["id"], "offset": 2, "duplicate": True},
                {"id": fresh["id"], "offset": 3, "duplicate": False},
            ],
        },
    ]
    assert everything()["events"] == [
        *before["events"],
        ("events", 3, uuid.UUID(fresh["id"]), "order.placed", {}),
    ]


@pytest.mark.parametrize(
    "operations, index, status",
    [
        # the second create of the same key conflicts with the first
        ([{"op": "create", "collection": "items", "key": "z", "data": {}}] * 2, 1, 409),
        # a record deleted earlier in the transaction no longer matches If-Match
        (
            [
                {"op": "delete", "collection": "items", "key": "a"},
                {"op": "patch", "collection": "items", "key": "a", "data": {}, "if_match": 1},
            ],
            1,
            412,
        ),
        # the first write moved b to version 4, so the second one's If-Match is stale
        ([{"op": "put", "collection": "items", "key": "b", "data": {}, "if_match": 3}] * 2, 1, 412),
    ],
    ids=["create twice", "patch after delete", "stale after own write"],
)
def test_a_conflict_with_an_earlier_operation_rolls_back_both(writer, world, operations, index, status):
    before = everything()

    response = post(writer, operations)

    assert_refused_at(response, index, status, None)
    assert everything() == before


@pytest.mark.parametrize("if_match", [2, "2", '"2"', 4, 10**30])
def test_a_stale_if_match_is_412_in_every_form(writer, world, if_match):
    before = everything()

    response = post(writer, [{"op": "delete", "collection": "items", "key": "b", "if_match": if_match}])

    assert assert_refused_at(response, 0, 412, "precondition_failed")["current_version"] == 3
    assert everything() == before


@pytest.mark.parametrize("if_match", [0, -1, True, 3.0, [3], {"v": 3}, "", "abc", '"3", "4"', 'W/"3"', "³"])
def test_an_if_match_that_is_no_version_is_422(writer, world, if_match):
    before = everything()

    response = post(writer, [{"op": "delete", "collection": "items", "key": "b", "if_match": if_match}])

    body = assert_refused_at(response, 0, 422, "validation_failed")
    assert error_paths(body) == ["/operations/0/if_match"]
    assert everything() == before


# --- the request as a whole ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, path",
    [
        ({"operations": []}, "/operations"),
        ({"operations": {"op": "create"}}, "/operations"),
        ({}, "/operations"),
        ({"operations": [VALID[0]], "atomic": False}, "/atomic"),
    ],
    ids=["no operations", "not a list", "missing", "unknown field"],
)
def test_a_malformed_request_is_422_and_writes_nothing(writer, world, body, path):
    before = everything()

    response = writer.post(transactions_url(), body, format="json")

    problem = assert_problem(response, 422)
    assert path in error_paths(problem)
    assert "operation" not in problem
    assert everything() == before


def test_more_than_1000_operations_are_refused_before_any_is_applied(writer, world):
    operations = [{"op": "create", "collection": "items", "data": {"n": n}} for n in range(1001)]
    before = everything()

    response = post(writer, operations)

    body = assert_problem(response, 422, "too_many_items")
    assert error_paths(body) == ["/operations"]
    assert everything() == before


@pytest.mark.slow
def test_1000_operations_are_accepted(writer, world):
    operations = [{"op": "append", "collection": "events", "events": [event()]} for _ in range(999)]
    operations.append({"op": "create", "collection": "items", "key": "last", "data": {}})

    response = post(writer, operations)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == 1000
    assert [result["first_offset"] for result in results[:-1]] == list(range(3, 1002))
    assert stored("items", "last") == (1, {})


# --- idempotency -----------------------------------------------------------------------------------


def test_a_retry_with_the_same_idempotency_key_is_replayed_and_applies_nothing(writer, world):
    operations = [
        {"op": "create", "collection": "items", "data": {"n": 1}},
        {"op": "append", "collection": "events", "events": [{"type": "t", "data": {}}]},
    ]
    first = post(writer, operations, HTTP_IDEMPOTENCY_KEY="tx-1")
    assert first.status_code == 200, first.content
    assert "Idempotent-Replayed" not in first
    after_first = everything()

    replay = post(writer, operations, HTTP_IDEMPOTENCY_KEY="tx-1")

    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert everything() == after_first
    assert Record.objects.filter(collection__name="items").count() == 3


def test_a_refused_transaction_is_replayed_even_once_it_would_succeed(writer, world):
    operations = [{"op": "put", "collection": "items", "key": "b", "data": {"n": 9}, "if_match": 4}]
    first = post(writer, operations, HTTP_IDEMPOTENCY_KEY="tx-2")
    assert_refused_at(first, 0, 412, "precondition_failed")
    services.record_put(collection=world["items"], key="b", data={"n": 3}, actor=TEST_ACTOR)  # now at 4
    before = everything()

    replay = post(writer, operations, HTTP_IDEMPOTENCY_KEY="tx-2")

    assert replay.status_code == 412
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert everything() == before


def test_the_same_idempotency_key_for_other_operations_is_422(writer, world):
    assert post(writer, [VALID[0]], HTTP_IDEMPOTENCY_KEY="tx-3").status_code == 200
    before = everything()

    response = post(writer, [VALID[1]], HTTP_IDEMPOTENCY_KEY="tx-3")

    assert_problem(response, 422, "idempotency_key_reused")
    assert everything() == before


# --- who may -------------------------------------------------------------------------------------


def test_anonymous_callers_get_401(client, world):
    response = client.post(transactions_url(), {"operations": [VALID[0]]}, content_type="application/json")

    assert_problem(response, 401)


def test_a_reader_gets_403_and_an_outsider_404_naming_the_operation(reader, outsider, world):
    operations = [VALID[0]]
    before = everything()

    assert_refused_at(post(reader, operations), 0, 403, "forbidden")
    assert_refused_at(post(outsider, operations), 0, 404, "collection_not_found")
    assert everything() == before


def test_the_owner_writes_all_its_collections_in_one_transaction(owner, world):
    operations = [
        {"op": "put", "collection": "shared", "key": "x", "data": {"by": "owner"}},
        {"op": "put", "collection": "private", "key": "y", "data": {"by": "owner"}},
        {"op": "append", "collection": "changes", "events": [event()]},
    ]

    response = post(owner, operations)

    assert response.status_code == 200, response.content
    assert stored("shared", "x") == (2, {"by": "owner"})
    assert stored("private", "y") == (2, {"by": "owner"})


def test_an_operator_writes_any_collection(operator, world):
    operations = [
        {"op": "put", "collection": "private", "key": "y", "data": {"by": "operator"}, "if_match": 1},
        {"op": "append", "collection": "events", "events": [event()]},
    ]

    response = post(operator, operations)

    assert response.status_code == 200, response.content
    assert Record.objects.get(collection__name="private", key="y").updated_by == "operator:alice"


OPERATIONS_AND_PERMISSIONS = {
    "create": ({"op": "create", "collection": "private", "data": {}}, ["add_record"]),
    "put": ({"op": "put", "collection": "private", "key": "y", "data": {}}, ["add_record", "change_record"]),
    "patch": ({"op": "patch", "collection": "private", "key": "y", "data": {"a": 1}}, ["change_record"]),
    "delete": ({"op": "delete", "collection": "private", "key": "y"}, ["delete_record"]),
    "append": (
        {"op": "append", "collection": "events", "events": [{"type": "t", "data": {}}]},
        ["add_event"],
    ),
}


@pytest.fixture
def staff(django_user_model):
    """A staff user without any permission, signed in with a session."""
    client = APIClient()
    user = django_user_model.objects.create_user(
        username="bob", password="a long enough password", is_staff=True
    )
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.parametrize(
    "operation, codenames", OPERATIONS_AND_PERMISSIONS.values(), ids=OPERATIONS_AND_PERMISSIONS
)
def test_an_operator_needs_the_django_permissions_of_each_operation(staff, world, operation, codenames):
    permissions = list(Permission.objects.filter(content_type__app_label="core", codename__in=codenames))
    assert len(permissions) == len(codenames)
    before = everything()
    for missing in permissions:
        staff.user.user_permissions.set([p for p in permissions if p != missing])
        response = post(staff, [operation])
        assert missing.codename in assert_refused_at(response, 0, 403, "forbidden")["detail"]
    assert everything() == before
    staff.user.user_permissions.set(permissions)

    response = post(staff, [operation])

    assert response.status_code == 200, response.content
