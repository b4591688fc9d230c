"""POST/GET /collections/{name}/events/: atomic appends at gapless offsets, dedupe by id, reads by offset."""

import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import Collection, Event, Record
from tests.core.records_support import (
    assert_problem,
    bulk_url,
    error_paths,
    history_url,
    record_url,
    records_url,
    revert_url,
)
from tests.core.streams_support import (
    append,
    consumer_url,
    event,
    events_url,
    last_offset,
    make_stream,
    stored_events,
    stream_state,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(owner, reader, writer):
    """A stream `events` of owner, readable by reader, writable by writer."""
    return make_stream(owner.service, readers=("reader",), writers=("writer",))


def post(client, events, url=None, **body):
    return client.post(url or events_url(), {"events": events, **body}, format="json")


def ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


# --- creating a stream ---------------------------------------------------------------------------


def test_a_stream_is_created_through_the_collections_api_with_last_offset_0(owner):
    response = owner.post(reverse("collection-list"), {"name": "orders", "kind": "stream"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["last_offset"], body["change_stream"]) == ("stream", 0, None)
    assert Collection.objects.get(name="orders").kind == "stream"


def test_the_collection_shows_the_last_offset_of_the_stream(owner, stream):
    append(stream, 3)

    response = owner.get(reverse("collection-detail", args=["events"]))

    assert response.status_code == 200
    assert response.json()["last_offset"] == 3


# --- append --------------------------------------------------------------------------------------


def test_owner_appends_events_at_offsets_1_2_3_in_request_order(owner, stream):
    a, b, c = ids(3)
    events = [
        event("order.placed", {"order": 1}, a),
        event("order.paid", {"order": 1, "amount": 9.5}, b),
        event("order.shipped", {"order": 1, "to": {"city": "Zürich"}}, c),
    ]

    response = post(owner, events)

    assert response.status_code == 201, response.content
    assert response.json() == {
        "first_offset": 1,
        "last_offset": 3,
        "events": [
            {"id": a, "offset": 1, "duplicate": False},
            {"id": b, "offset": 2, "duplicate": False},
            {"id": c, "offset": 3, "duplicate": False},
        ],
    }
    assert stored_events(stream) == [
        (1, a, "order.placed", {"order": 1}, "service:owner"),
        (2, b, "order.paid", {"order": 1, "amount": 9.5}, "service:owner"),
        (3, c, "order.shipped", {"order": 1, "to": {"city": "Zürich"}}, "service:owner"),
    ]
    assert last_offset(stream) == 3
    assert Event.objects.filter(stream=stream, created_at__isnull=True).count() == 0


def test_a_later_append_continues_after_the_last_offset(owner, stream):
    assert post(owner, [event(), event()]).status_code == 201

    response = post(owner, [event("second"), event("second"), event("second")])

    assert response.status_code == 201
    body = response.json()
    assert (body["first_offset"], body["last_offset"]) == (3, 5)
    assert [item["offset"] for item in body["events"]] == [3, 4, 5]
    assert [row[0] for row in stored_events(stream)] == [1, 2, 3, 4, 5]
    assert last_offset(stream) == 5


def test_an_event_without_id_gets_a_generated_uuid(owner, stream):
    response = post(
        owner, [event("no.id", {"x": 1}, event_id=False), {"type": "null.id", "data": {}, "id": None}]
    )

    assert response.status_code == 201, response.content
    generated = [item["id"] for item in response.json()["events"]]
    assert all(uuid.UUID(value).version == 4 for value in generated)
    assert len(set(generated)) == 2
    assert [(row[0], row[1], row[2]) for row in stored_events(stream)] == [
        (1, generated[0], "no.id"),
        (2, generated[1], "null.id"),
    ]


def test_a_writer_may_append_and_is_recorded_as_the_producer(writer, stream):
    response = post(writer, [event("by.writer")])

    assert response.status_code == 201, response.content
    assert [(row[2], row[4]) for row in stored_events(stream)] == [("by.writer", "service:writer")]


def test_an_operator_may_append(operator, stream):
    response = post(operator, [event("by.operator")])

    assert response.status_code == 201, response.content
    assert [(row[2], row[4]) for row in stored_events(stream)] == [("by.operator", "operator:alice")]


def test_a_thousand_events_are_appended_in_one_request(owner, stream):
    response = post(owner, [event("bulk", {"n": n}) for n in range(1000)])

    assert response.status_code == 201
    body = response.json()
    assert (body["first_offset"], body["last_offset"]) == (1, 1000)
    assert [item["offset"] for item in body["events"]] == list(range(1, 1001))
    rows = Event.objects.filter(stream=stream).order_by("offset").values_list("offset", "data")
    assert [(offset, data["n"]) for offset, data in rows] == [(n + 1, n) for n in range(1000)]


def test_more_than_1000_events_is_a_422_and_appends_nothing(owner, stream):
    response = post(owner, [event() for _ in range(1001)])

    body = assert_problem(response, 422, "too_many_items")
    assert error_paths(body) == ["/events"]
    assert stored_events(stream) == []
    assert last_offset(stream) == 0


@pytest.mark.parametrize("events", [[], "nope", {"type": "x", "data": {}}, None])
def test_events_must_be_a_non_empty_list(owner, stream, events):
    response = post(owner, events)

    body = assert_problem(response, 422)
    assert error_paths(body) == ["/events"]
    assert stored_events(stream) == []


def test_the_body_must_hold_events_and_no_unknown_fields(owner, stream):
    missing = owner.post(events_url(), {"expected_last_offset": 0}, format="json")
    unknown = owner.post(events_url(), {"events": [event()], "partition": 3}, format="json")
    not_object = owner.post(events_url(), [event()], format="json")

    assert error_paths(assert_problem(missing, 422)) == ["/events"]
    assert error_paths(assert_problem(unknown, 422)) == ["/partition"]
    assert_problem(not_object, 400, "body_not_object")
    assert stored_events(stream) == []


# --- validation of events -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"data": {}}, "/events/3/type"),
        ({"type": "", "data": {}}, "/events/3/type"),
        ({"type": "t" * 201, "data": {}}, "/events/3/type"),
        ({"type": "line\nbreak", "data": {}}, "/events/3/type"),
        ({"type": 7, "data": {}}, "/events/3/type"),
        ({"type": "t", "data": {}, "id": "not-a-uuid"}, "/events/3/id"),
        ({"type": "t", "data": {}, "id": 12}, "/events/3/id"),
        ({"type": "t"}, "/events/3/data"),
        ({"type": "t", "data": [1, 2]}, "/events/3/data"),
        ({"type": "t", "data": "text"}, "/events/3/data"),
        ({"type": "t", "data": {"s": "nul\u0000"}}, "/events/3/data/s"),
        ({"type": "t", "data": {}, "offset": 4}, "/events/3/offset"),
        ("not an object", "/events/3"),
    ],
)
def test_an_invalid_event_is_a_422_naming_its_path_and_index_and_nothing_is_appended(
    owner, stream, bad, path
):
    append(stream, 2)
    before = stream_state(stream)
    events = [event(), event(), event(), bad, event()]

    response = post(owner, events)

    body = assert_problem(response, 422)
    assert path in error_paths(body), body
    assert body["index"] == 3
    assert all(error["message"] for error in body["errors"])
    assert stream_state(stream) == before


def test_every_invalid_event_is_listed_and_index_names_the_first(owner, stream):
    response = post(owner, [event(), {"type": "", "data": {}}, event(), {"type": "t", "data": 1}])

    body = assert_problem(response, 422)
    assert error_paths(body) == ["/events/1/type", "/events/3/data"]
    assert body["index"] == 1
    assert stored_events(stream) == []


def test_an_event_with_data_over_1_mib_is_a_413_naming_its_index_and_nothing_is_appended(owner, stream):
    huge = {"blob": "x" * (1024 * 1024)}

    response = post(owner, [event(), event("big", huge), event()])

    body = assert_problem(response, 413, "record_too_large")
    assert body["index"] == 1
    assert error_paths(body) == ["/events/1/data"]
    assert stored_events(stream) == []


def test_a_type_of_200_characters_is_accepted(owner, stream):
    response = post(owner, [event("t" * 200)])

    assert response.status_code == 201
    assert stored_events(stream)[0][2] == "t" * 200


# --- deduplication by id --------------------------------------------------------------------------


def test_an_id_already_in_the_stream_with_the_same_payload_is_a_duplicate_at_its_old_offset(owner, stream):
    a, b, c = ids(3)
    assert post(owner, [event("first", {"v": 1}, a), event("first", {"v": 1}, b)]).status_code == 201

    response = post(owner, [event("first", {"v": 1}, b), event("new", {"v": 3}, c)])

    assert response.status_code == 201
    assert response.json() == {
        "first_offset": 3,
        "last_offset": 3,
        "events": [
            {"id": b, "offset": 2, "duplicate": True},
            {"id": c, "offset": 3, "duplicate": False},
        ],
    }
    assert stored_events(stream) == [
        (1, a, "first", {"v": 1}, "service:owner"),
        (2, b, "first", {"v": 1}, "service:owner"),
        (3, c, "new", {"v": 3}, "service:owner"),
    ]
    assert last_offset(stream) == 3


def test_an_id_already_in_the_stream_with_other_data_is_a_409_naming_the_event_and_appends_nothing(
    owner, stream
):
    a, b, c = ids(3)
    assert post(owner, [event("first", {"v": 1}, a), event("first", {"v": 1}, b)]).status_code == 201
    before = stream_state(stream)

    response = post(owner, [event("new", {"v": 3}, c), event("first", {"v": 2}, b)])

    body = assert_problem(response, 409, "event_id_conflict")
    assert body["index"] == 1
    assert body["offset"] == 2
    assert error_paths(body) == ["/events/1/id"]
    assert b in body["detail"]
    assert stream_state(stream) == before


def test_an_id_already_in_the_stream_with_another_type_is_a_409(owner, stream):
    a = str(uuid.uuid4())
    post(owner, [event("order.placed", {"n": 1}, a)])
    before = stream_state(stream)

    response = post(owner, [event("order.cancelled", {"n": 1}, a)])

    assert assert_problem(response, 409, "event_id_conflict")["index"] == 0
    assert stream_state(stream) == before


def test_every_conflicting_event_is_listed_and_index_names_the_first(owner, stream):
    a, b = ids(2)
    post(owner, [event("x", {"n": 1}, a), event("x", {"n": 2}, b)])

    response = post(owner, [event("x", {"n": 1}, a), event("x", {"n": 9}, b), event("y"), event("x", {}, a)])

    body = assert_problem(response, 409, "event_id_conflict")
    assert body["index"] == 1
    assert error_paths(body) == ["/events/1/id", "/events/3/id"]
    assert last_offset(stream) == 2


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ({"a": 1, "b": {"c": [1, 2], "d": None}}, {"b": {"d": None, "c": [1, 2]}, "a": 1}),
        ({"n": 1}, {"n": 1.0}),
        ({"n": 100}, {"n": 1e2}),
        ({"n": 0.1, "big": 10**30}, {"big": 10**30, "n": 0.1}),
        ({"s": "Zürich"}, {"s": "Zürich"}),
    ],
)
def test_payloads_are_compared_as_json_values_not_as_text(owner, stream, stored, sent):
    a = str(uuid.uuid4())
    post(owner, [event("t", stored, a)])

    response = post(owner, [event("t", sent, a)])

    assert response.status_code == 200, response.content
    assert response.json()["events"] == [{"id": a, "offset": 1, "duplicate": True}]


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ({"flag": True}, {"flag": 1}),
        ({"n": 0}, {"n": False}),
        ({"n": None}, {}),
        ({"list": [1, 2]}, {"list": [2, 1]}),
        ({"n": 1}, {"n": "1"}),
        ({"n": 0.1}, {"n": 0.10000000000000002}),
    ],
)
def test_payloads_that_differ_as_json_values_conflict(owner, stream, stored, sent):
    a = str(uuid.uuid4())
    post(owner, [event("t", stored, a)])

    assert_problem(post(owner, [event("t", sent, a)]), 409, "event_id_conflict")
    assert len(stored_events(stream)) == 1


def test_the_same_event_sent_again_by_another_producer_is_a_duplicate(owner, writer, stream):
    sent = event("shared", {"n": 1})
    post(owner, [sent])

    response = post(writer, [sent])

    assert response.status_code == 200
    assert response.json()["events"] == [{"id": sent["id"], "offset": 1, "duplicate": True}]
    assert stored_events(stream) == [(1, sent["id"], "shared", {"n": 1}, "service:owner")]


def test_a_repeated_id_within_one_request_is_appended_once_and_marked_duplicate(owner, stream):
    a, b = ids(2)

    response = post(owner, [event("one", {}, a), event("two", {}, b), event("one", {}, a)])

    assert response.status_code == 201
    assert response.json() == {
        "first_offset": 1,
        "last_offset": 2,
        "events": [
            {"id": a, "offset": 1, "duplicate": False},
            {"id": b, "offset": 2, "duplicate": False},
            {"id": a, "offset": 1, "duplicate": True},
        ],
    }
    assert [(row[0], row[1], row[2]) for row in stored_events(stream)] == [(1, a, "one"), (2, b, "two")]
    assert last_offset(stream) == 2


def test_a_repeated_id_within_one_request_with_other_data_is_a_409_and_appends_nothing(owner, stream):
    a, b = ids(2)

    response = post(owner, [event("one", {}, a), event("two", {}, b), event("one.more", {}, a)])

    body = assert_problem(response, 409, "event_id_conflict")
    assert body["index"] == 2
    assert error_paths(body) == ["/events/2/id"]
    assert stored_events(stream) == []
    assert last_offset(stream) == 0


def test_a_retry_of_a_whole_request_is_a_200_with_the_original_offsets_and_appends_nothing(
    owner, writer, stream
):
    batch = [event("x", {"n": 1}), event("x", {"n": 2})]
    first = post(owner, batch)
    assert post(writer, [event("other")]).status_code == 201
    before = stream_state(stream)

    retry = post(owner, batch)

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json() == {
        "first_offset": None,
        "last_offset": None,
        "events": [
            {"id": batch[0]["id"], "offset": 1, "duplicate": True},
            {"id": batch[1]["id"], "offset": 2, "duplicate": True},
        ],
    }
    assert stream_state(stream) == before


def test_a_partial_retry_appends_only_the_new_events_and_first_offset_names_the_first_of_them(owner, stream):
    old = [event("x", {"n": 1}), event("x", {"n": 2})]
    post(owner, old)
    append(stream, 3)
    new = event("x", {"n": 3})

    response = post(owner, [old[0], new, old[1]])

    assert response.status_code == 201
    assert response.json() == {
        "first_offset": 6,
        "last_offset": 6,
        "events": [
            {"id": old[0]["id"], "offset": 1, "duplicate": True},
            {"id": new["id"], "offset": 6, "duplicate": False},
            {"id": old[1]["id"], "offset": 2, "duplicate": True},
        ],
    }
    assert last_offset(stream) == 6


def test_an_id_in_another_spelling_of_the_same_uuid_is_the_same_event(owner, stream):
    a = str(uuid.uuid4())
    post(owner, [event("x", {}, a)])

    response = post(owner, [event("x", {}, a.upper())])

    assert response.status_code == 200
    assert response.json()["events"] == [{"id": a, "offset": 1, "duplicate": True}]
    assert len(stored_events(stream)) == 1


def test_the_same_id_in_another_stream_is_another_event(owner, stream):
    make_stream(owner.service, "audit")
    a = str(uuid.uuid4())
    post(owner, [event(), event("x", {}, a)])

    response = post(owner, [event("y", {"other": True}, a)], url=events_url("audit"))

    assert response.status_code == 201
    assert response.json()["events"] == [{"id": a, "offset": 1, "duplicate": False}]
    assert Event.objects.filter(event_id=a).count() == 2


def test_an_event_id_conflict_wins_over_a_stale_expected_last_offset(owner, stream):
    a = str(uuid.uuid4())
    post(owner, [event("x", {"n": 1}, a)])
    before = stream_state(stream)

    response = post(owner, [event("x", {"n": 2}, a), event()], expected_last_offset=0)

    assert_problem(response, 409, "event_id_conflict")
    assert stream_state(stream) == before


# --- expected_last_offset -------------------------------------------------------------------------


def test_expected_last_offset_0_appends_to_an_empty_stream(owner, stream):
    response = post(owner, [event()], expected_last_offset=0)

    assert response.status_code == 201
    assert response.json()["first_offset"] == 1


def test_a_matching_expected_last_offset_appends(owner, stream):
    append(stream, 2)

    response = post(owner, [event(), event()], expected_last_offset=2)

    assert response.status_code == 201
    assert (response.json()["first_offset"], response.json()["last_offset"]) == (3, 4)
    assert last_offset(stream) == 4


@pytest.mark.parametrize("expected", [0, 1, 3, 10**30])
def test_a_differing_expected_last_offset_is_a_409_with_the_actual_one_and_appends_nothing(
    owner, stream, expected
):
    append(stream, 2)
    before = stream_state(stream)

    response = post(owner, [event(), event()], expected_last_offset=expected)

    body = assert_problem(response, 409, "unexpected_last_offset")
    assert body["last_offset"] == 2
    assert stream_state(stream) == before


def test_a_retry_whose_events_are_all_in_the_stream_succeeds_despite_a_stale_expected_last_offset(
    owner, stream
):
    batch = [event("first"), event("first")]
    assert post(owner, batch, expected_last_offset=0).status_code == 201
    assert post(owner, [event("later")], expected_last_offset=2).status_code == 201
    before = stream_state(stream)

    retry = post(owner, batch, expected_last_offset=0)

    assert retry.status_code == 200, retry.content
    assert retry.json()["events"] == [
        {"id": batch[0]["id"], "offset": 1, "duplicate": True},
        {"id": batch[1]["id"], "offset": 2, "duplicate": True},
    ]
    assert stream_state(stream) == before


def test_a_partial_retry_with_a_stale_expected_last_offset_is_a_409(owner, stream):
    known = event("known")
    assert post(owner, [known], expected_last_offset=0).status_code == 201
    before = stream_state(stream)

    response = post(owner, [known, event("new")], expected_last_offset=0)

    body = assert_problem(response, 409, "unexpected_last_offset")
    assert body["last_offset"] == 1
    assert stream_state(stream) == before


@pytest.mark.parametrize("expected", [-1, "1", True, 1.5, [1]])
def test_an_invalid_expected_last_offset_is_a_422(owner, stream, expected):
    response = post(owner, [event()], expected_last_offset=expected)

    assert error_paths(assert_problem(response, 422)) == ["/expected_last_offset"]
    assert stored_events(stream) == []


# --- read ----------------------------------------------------------------------------------------


def test_events_are_read_ascending_with_every_field(owner, reader, stream):
    a, b = ids(2)
    post(owner, [event("one", {"n": 1}, a), event("two", {"n": 2}, b)])

    response = reader.get(events_url())

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "last_offset", "next_after"}
    assert (body["last_offset"], body["next_after"]) == (2, 2)
    stored = {row.offset: row for row in Event.objects.filter(stream=stream)}
    assert body["results"] == [
        {
            "offset": 1,
            "id": a,
            "type": "one",
            "data": {"n": 1},
            "producer": "service:owner",
            "created_at": stored[1].created_at.isoformat().replace("+00:00", "Z"),
        },
        {
            "offset": 2,
            "id": b,
            "type": "two",
            "data": {"n": 2},
            "producer": "service:owner",
            "created_at": stored[2].created_at.isoformat().replace("+00:00", "Z"),
        },
    ]


def test_after_and_limit_page_through_the_stream_by_next_after(reader, stream):
    append(stream, 5)
    pages, after = [], 0

    for _ in range(10):  # bounded: 3 pages expected
        body = reader.get(events_url(), {"after": after, "limit": 2}).json()
        if not body["results"]:
            break
        pages.append([item["offset"] for item in body["results"]])
        assert body["last_offset"] == 5
        assert body["next_after"] == body["results"][-1]["offset"]
        after = body["next_after"]

    assert pages == [[1, 2], [3, 4], [5]]
    assert after == 5


def test_a_page_past_the_end_is_empty_and_next_after_is_after(reader, stream):
    append(stream, 3)

    at_end = reader.get(events_url(), {"after": 3}).json()
    beyond = reader.get(events_url(), {"after": 7}).json()

    assert at_end == {"results": [], "last_offset": 3, "next_after": 3}
    assert beyond == {"results": [], "last_offset": 3, "next_after": 7}


def test_an_empty_stream_reads_as_an_empty_page(reader, stream):
    assert reader.get(events_url()).json() == {"results": [], "last_offset": 0, "next_after": 0}


def test_the_default_page_is_100_events(reader, stream):
    append(stream, 150)

    body = reader.get(events_url()).json()

    assert [item["offset"] for item in body["results"]] == list(range(1, 101))
    assert (body["last_offset"], body["next_after"]) == (150, 100)


def test_a_page_costs_the_same_queries_whatever_its_size(reader, stream):
    append(stream, 60)

    with CaptureQueriesContext(connection) as small:
        assert len(reader.get(events_url(), {"limit": 1}).json()["results"]) == 1
    with CaptureQueriesContext(connection) as large:
        assert len(reader.get(events_url(), {"after": 5, "limit": 50}).json()["results"]) == 50

    assert len(large) == len(small)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"after": "-1"}, "invalid_after"),
        ({"after": "abc"}, "invalid_after"),
        ({"after": "1.5"}, "invalid_after"),
        ({"after": "1" * 19}, "invalid_after"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "1001"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"wait": "31"}, "invalid_wait"),
        ({"wait": "30.5"}, "invalid_wait"),
        ({"wait": "-1"}, "invalid_wait"),
        ({"wait": "soon"}, "invalid_wait"),
    ],
)
def test_an_invalid_query_parameter_is_a_400(reader, stream, params, code):
    assert_problem(reader.get(events_url(), params), 400, code)


def test_wait_returns_at_once_when_events_are_there(reader, stream):
    append(stream, 2)
    started = time.monotonic()

    body = reader.get(events_url(), {"after": 1, "wait": 30}).json()

    assert time.monotonic() - started < 2
    assert [item["offset"] for item in body["results"]] == [2]


@pytest.mark.parametrize("wait", ["0", "30", "0.25"])
def test_wait_accepts_0_to_30_seconds(reader, stream, wait):
    append(stream, 1)
    assert reader.get(events_url(), {"wait": wait}).status_code == 200


# --- paths, principals and kinds ------------------------------------------------------------------


@pytest.mark.parametrize("slash", [True, False])
def test_events_are_served_with_and_without_the_trailing_slash(owner, stream, slash):
    url = events_url() if slash else events_url().rstrip("/")
    assert not url.endswith("/") or slash

    appended = post(owner, [event("x")], url=url)
    read = owner.get(url)

    assert appended.status_code == 201
    assert read.status_code == 200
    assert [item["offset"] for item in read.json()["results"]] == [1]


def test_a_reader_may_read_but_appending_is_a_403(reader, stream):
    append(stream, 1)
    before = stream_state(stream)

    assert reader.get(events_url()).status_code == 200
    assert_problem(post(reader, [event()]), 403, "forbidden")
    assert stream_state(stream) == before


def test_an_outsider_gets_404_for_reading_and_appending(outsider, stream):
    append(stream, 1)
    before = stream_state(stream)

    assert_problem(outsider.get(events_url()), 404, "collection_not_found")
    assert_problem(post(outsider, [event()]), 404, "collection_not_found")
    assert_problem(outsider.get(consumer_url("c1")), 404, "collection_not_found")
    assert stream_state(stream) == before


def test_without_credentials_it_is_a_401(stream):
    anonymous = APIClient()
    assert_problem(anonymous.get(events_url()), 401)
    assert_problem(post(anonymous, [event()]), 401)
    assert stored_events(stream) == []


def test_an_unknown_stream_is_a_404(owner):
    assert_problem(owner.get(events_url("nope")), 404, "collection_not_found")
    assert_problem(post(owner, [event()], url=events_url("nope")), 404, "collection_not_found")


def test_event_and_consumer_endpoints_on_a_records_collection_are_404_not_a_stream(owner, items):
    assert_problem(owner.get(events_url("items")), 404, "not_a_stream")
    assert_problem(post(owner, [event()], url=events_url("items")), 404, "not_a_stream")
    assert_problem(owner.get(consumer_url("c1", "items")), 404, "not_a_stream")
    assert_problem(owner.put(consumer_url("c1", "items"), {"offset": 0}, format="json"), 404, "not_a_stream")
    assert not Event.objects.exists()


def test_record_endpoints_on_a_stream_are_404(owner, stream):
    append(stream, 1)
    before = stream_state(stream)
    data = {"data": {"a": 1}}

    responses = [
        owner.get(records_url("events")),
        owner.post(records_url("events"), {"key": "k", **data}, format="json"),
        owner.get(record_url("k", "events")),
        owner.put(record_url("k", "events"), data, format="json"),
        owner.patch(record_url("k", "events"), data, format="json"),
        owner.delete(record_url("k", "events")),
        owner.post(bulk_url("events"), {"mode": "upsert", "records": [{"key": "k", **data}]}, format="json"),
        owner.get(history_url("k", "events")),
        owner.post(revert_url("k", "events"), {"version": 1}, format="json"),
    ]

    for response in responses:
        assert_problem(response, 404, "not_a_records_collection")
    assert not Record.objects.exists()
    assert stream_state(stream) == before


# --- immutability --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_events_cannot_be_changed_or_deleted_through_the_api(owner, operator, stream, method):
    append(stream, 2)
    before = stream_state(stream)

    for client in (owner, operator):
        response = getattr(client, method)(events_url(), {"events": [event()]}, format="json")
        assert_problem(response, 405, "method_not_allowed")
    assert stream_state(stream) == before


# --- Idempotency-Key -----------------------------------------------------------------------------


def test_an_append_with_an_idempotency_key_is_replayed_to_a_retry(owner, stream):
    batch = [event("generated.id", {"n": 1}, event_id=False), event("generated.id", {"n": 2}, event_id=False)]
    headers = {"HTTP_IDEMPOTENCY_KEY": "append-1"}
    first = owner.post(events_url(), {"events": batch}, format="json", **headers)
    assert first.status_code == 201
    before = stream_state(stream)

    retry = owner.post(events_url(), {"events": batch}, format="json", **headers)

    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert stream_state(stream) == before
    assert [row[0] for row in before["events"]] == [1, 2]


def test_an_idempotency_key_reused_for_another_append_is_a_422(owner, stream):
    headers = {"HTTP_IDEMPOTENCY_KEY": "append-2"}
    assert owner.post(events_url(), {"events": [event()]}, format="json", **headers).status_code == 201
    before = stream_state(stream)

    response = owner.post(events_url(), {"events": [event()]}, format="json", **headers)

    assert_problem(response, 422, "idempotency_key_reused")
    assert stream_state(stream) == before


# --- deleting a stream ---------------------------------------------------------------------------


def test_an_empty_stream_is_deleted_by_its_owner(owner, stream):
    response = owner.delete(reverse("collection-detail", args=["events"]))

    assert response.status_code == 204
    assert not Collection.objects.filter(name="events").exists()


def test_a_stream_holding_events_is_not_deleted_by_its_owner(owner, stream):
    append(stream, 3)
    before = stream_state(stream)

    response = owner.delete(reverse("collection-detail", args=["events"]))

    body = assert_problem(response, 409, "collection_not_empty")
    assert body["count"] == 3
    assert stream_state(stream) == before


def test_an_operator_may_delete_a_stream_holding_events(operator, stream):
    append(stream, 3)

    response = operator.delete(reverse("collection-detail", args=["events"]))

    assert response.status_code == 204, response.content
    assert not Collection.objects.filter(name="events").exists()
    assert not Event.objects.exists()
