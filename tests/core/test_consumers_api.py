"""GET/PUT /collections/{name}/consumers/{consumer}/: forward-only positions with lag, force for owners."""

import pytest
from django.utils.dateparse import parse_datetime

from core.models import ConsumerPosition
from tests.core.records_support import assert_problem, error_paths
from tests.core.streams_support import append, consumer_url, make_stream, stream_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(owner, reader, writer):
    """A stream `events` of owner holding 5 events, readable by reader, writable by writer."""
    stream = make_stream(owner.service, readers=("reader",), writers=("writer",))
    append(stream, 5)
    return stream


def put(client, offset, consumer="indexer", **body):
    return client.put(consumer_url(consumer), {"offset": offset, **body}, format="json")


def position(stream, consumer="indexer") -> tuple[int, str] | None:
    found = ConsumerPosition.objects.filter(stream=stream, consumer=consumer).first()
    return None if found is None else (found.offset, found.updated_by)


# --- reading -------------------------------------------------------------------------------------


def test_an_unknown_consumer_is_at_0_with_the_whole_stream_as_lag(reader, stream):
    response = reader.get(consumer_url("new-one"))

    assert response.status_code == 200
    assert response.json() == {
        "consumer": "new-one",
        "offset": 0,
        "last_offset": 5,
        "lag": 5,
        "updated_at": None,
    }
    assert not ConsumerPosition.objects.exists()


def test_a_stored_position_is_read_with_its_lag_and_update_time(owner, reader, stream):
    put(owner, 2)
    stored = ConsumerPosition.objects.get(stream=stream, consumer="indexer")

    body = reader.get(consumer_url("indexer")).json()

    assert (body["consumer"], body["offset"], body["last_offset"], body["lag"]) == ("indexer", 2, 5, 3)
    assert parse_datetime(body["updated_at"]) == stored.updated_at


def test_lag_grows_as_events_are_appended(owner, stream):
    put(owner, 5)
    assert owner.get(consumer_url("indexer")).json()["lag"] == 0

    append(stream, 3)

    body = owner.get(consumer_url("indexer")).json()
    assert (body["offset"], body["last_offset"], body["lag"]) == (5, 8, 3)


# --- moving forward ------------------------------------------------------------------------------


def test_a_consumer_moves_forward(owner, stream):
    first = put(owner, 2)
    second = put(owner, 4)

    assert first.status_code == 200, first.content
    assert second.status_code == 200
    body = second.json()
    assert (body["consumer"], body["offset"], body["last_offset"], body["lag"]) == ("indexer", 4, 5, 1)
    assert body["updated_at"] is not None
    assert position(stream) == (4, "service:owner")


def test_a_reader_may_keep_its_position(reader, stream):
    response = put(reader, 3)

    assert response.status_code == 200, response.content
    assert response.json()["offset"] == 3
    assert position(stream) == (3, "service:reader")


def test_the_first_position_may_be_any_offset_up_to_the_last(writer, stream):
    assert put(writer, 5).status_code == 200
    assert put(writer, 0, consumer="starter").status_code == 200
    assert position(stream) == (5, "service:writer")
    assert position(stream, "starter") == (0, "service:writer")


def test_setting_the_same_offset_again_is_fine(reader, stream):
    put(reader, 3)

    response = put(reader, 3)

    assert response.status_code == 200
    assert response.json()["offset"] == 3
    assert position(stream) == (3, "service:reader")


def test_positions_are_per_consumer_and_per_stream(owner, stream):
    other = make_stream(owner.service, "audit")
    append(other, 2)

    put(owner, 4, consumer="a")
    put(owner, 1, consumer="b")
    owner.put(consumer_url("a", "audit"), {"offset": 2}, format="json")

    assert position(stream, "a") == (4, "service:owner")
    assert position(stream, "b") == (1, "service:owner")
    assert position(other, "a") == (2, "service:owner")


# --- moving backwards ----------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "reader", "writer"])
def test_moving_backwards_without_force_is_a_409_and_changes_nothing(request, stream, who):
    client = request.getfixturevalue(who)
    put(client, 4)
    before = stream_state(stream)

    response = put(client, 2)

    body = assert_problem(response, 409, "position_moves_backwards")
    assert body["offset"] == 4
    assert stream_state(stream) == before


def test_force_false_is_the_same_as_no_force(owner, stream):
    put(owner, 4)

    assert_problem(put(owner, 2, force=False), 409, "position_moves_backwards")
    assert position(stream) == (4, "service:owner")


def test_the_owner_may_move_a_consumer_backwards_with_force(owner, reader, stream):
    put(reader, 4)

    response = put(owner, 1, force=True)

    assert response.status_code == 200, response.content
    assert (response.json()["offset"], response.json()["lag"]) == (1, 4)
    assert position(stream) == (1, "service:owner")


def test_an_operator_may_move_a_consumer_backwards_with_force(operator, reader, stream):
    put(reader, 4)

    response = put(operator, 0, force=True)

    assert response.status_code == 200, response.content
    assert response.json()["offset"] == 0
    assert position(stream) == (0, "operator:alice")


@pytest.mark.parametrize("who", ["reader", "writer"])
def test_force_by_a_service_that_does_not_own_the_stream_is_a_403(request, stream, who):
    client = request.getfixturevalue(who)
    put(client, 4)
    before = stream_state(stream)

    response = put(client, 1, force=True)

    assert_problem(response, 403, "forbidden")
    assert stream_state(stream) == before


# --- beyond the end and invalid input -------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "reader", "operator"])
def test_an_offset_beyond_the_last_is_a_422(request, stream, who):
    client = request.getfixturevalue(who)
    put(client, 2)
    before = stream_state(stream)

    response = put(client, 6, force=True) if who != "reader" else put(client, 6)

    body = assert_problem(response, 422, "offset_beyond_end")
    assert error_paths(body) == ["/offset"]
    assert body["last_offset"] == 5
    assert stream_state(stream) == before


def test_a_new_consumer_beyond_the_last_offset_is_a_422_and_stores_nothing(owner, stream):
    assert_problem(put(owner, 6, consumer="eager"), 422, "offset_beyond_end")
    assert position(stream, "eager") is None


def test_on_an_empty_stream_only_offset_0_is_accepted(owner):
    make_stream(owner.service, "empty")
    url = consumer_url("c", "empty")

    assert_problem(owner.put(url, {"offset": 1}, format="json"), 422, "offset_beyond_end")
    assert owner.put(url, {"offset": 0}, format="json").json()["lag"] == 0


@pytest.mark.parametrize("offset", [-1, "3", 1.5, True, None, [1]])
def test_an_offset_that_is_not_an_integer_of_0_or_more_is_a_422(owner, stream, offset):
    response = put(owner, offset)

    assert error_paths(assert_problem(response, 422)) == ["/offset"]
    assert not ConsumerPosition.objects.exists()


@pytest.mark.parametrize(
    ("body", "path"),
    [({}, "/offset"), ({"offset": 1, "lag": 0}, "/lag"), ({"offset": 1, "force": "yes"}, "/force")],
)
def test_a_body_without_offset_or_with_unknown_fields_or_a_bad_force_is_a_422(owner, stream, body, path):
    response = owner.put(consumer_url("indexer"), body, format="json")

    assert error_paths(assert_problem(response, 422)) == [path]
    assert not ConsumerPosition.objects.exists()


def test_an_invalid_consumer_name_is_a_422(owner, stream):
    response = put(owner, 1, consumer="-starts-with-dash")

    assert error_paths(assert_problem(response, 422, "invalid_key")) == ["/consumer"]
    assert not ConsumerPosition.objects.exists()


# --- paths and principals -------------------------------------------------------------------------


@pytest.mark.parametrize("slash", [True, False])
def test_consumers_are_served_with_and_without_the_trailing_slash(reader, stream, slash):
    url = consumer_url("indexer") if slash else consumer_url("indexer").rstrip("/")

    assert reader.put(url, {"offset": 2}, format="json").status_code == 200
    assert reader.get(url).json()["offset"] == 2


def test_an_outsider_gets_404_for_positions(outsider, stream):
    before = stream_state(stream)

    assert_problem(outsider.get(consumer_url("indexer")), 404, "collection_not_found")
    assert_problem(put(outsider, 1), 404, "collection_not_found")
    assert stream_state(stream) == before


def test_a_position_cannot_be_deleted_through_the_api(owner, stream):
    put(owner, 3)

    assert_problem(owner.delete(consumer_url("indexer")), 405, "method_not_allowed")
    assert position(stream) == (3, "service:owner")
