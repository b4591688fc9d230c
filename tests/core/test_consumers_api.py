"""GET/PUT /collections/{name}/consumers/{consumer}/: each service's own forward-only positions, with lag."""

import pytest
from django.utils.dateparse import parse_datetime

from core.models import ConsumerPosition
from tests.core.records_support import assert_problem, error_paths
from tests.core.streams_support import append, consumer_url, keep_position, make_stream, stream_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(owner, reader, writer):
    """A stream `events` of owner holding 5 events, readable by reader, writable by writer."""
    stream = make_stream(owner.service, readers=("reader",), writers=("writer",))
    append(stream, 5)
    return stream


def put(client, offset, consumer="indexer", service=None, **body):
    return client.put(consumer_url(consumer, service=service), {"offset": offset, **body}, format="json")


def position(stream, consumer="indexer", keeper="owner") -> tuple[int, str] | None:
    """(offset, updated_by) of keeper's consumer, or None when it has no stored position."""
    found = ConsumerPosition.objects.filter(stream=stream, owner__name=keeper, consumer=consumer).first()
    return None if found is None else (found.offset, found.updated_by)


# --- reading -------------------------------------------------------------------------------------


def test_an_unknown_consumer_is_at_0_with_the_whole_stream_as_lag(reader, stream):
    response = reader.get(consumer_url("new-one"))

    assert response.status_code == 200
    assert response.json() == {
        "consumer": "new-one",
        "service": "reader",
        "offset": 0,
        "last_offset": 5,
        "lag": 5,
        "updated_at": None,
    }
    assert not ConsumerPosition.objects.exists()


def test_a_stored_position_is_read_with_its_service_lag_and_update_time(reader, stream):
    put(reader, 2)
    stored = ConsumerPosition.objects.get(stream=stream, consumer="indexer")

    body = reader.get(consumer_url("indexer")).json()

    assert (body["consumer"], body["service"], body["offset"], body["last_offset"], body["lag"]) == (
        "indexer",
        "reader",
        2,
        5,
        3,
    )
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
    assert (body["consumer"], body["service"], body["offset"], body["last_offset"], body["lag"]) == (
        "indexer",
        "owner",
        4,
        5,
        1,
    )
    assert body["updated_at"] is not None
    assert position(stream) == (4, "service:owner")


def test_a_reader_keeps_a_position_of_its_own(reader, stream):
    response = put(reader, 3)

    assert response.status_code == 200, response.content
    assert (response.json()["service"], response.json()["offset"]) == ("reader", 3)
    assert position(stream, keeper="reader") == (3, "service:reader")
    assert position(stream, keeper="owner") is None


def test_the_first_position_may_be_any_offset_up_to_the_last(writer, stream):
    assert put(writer, 5).status_code == 200
    assert put(writer, 0, consumer="starter").status_code == 200
    assert position(stream, keeper="writer") == (5, "service:writer")
    assert position(stream, "starter", keeper="writer") == (0, "service:writer")


def test_setting_the_same_offset_again_is_fine(reader, stream):
    put(reader, 3)

    response = put(reader, 3)

    assert response.status_code == 200
    assert response.json()["offset"] == 3
    assert position(stream, keeper="reader") == (3, "service:reader")


def test_positions_are_per_consumer_and_per_stream(owner, stream):
    other = make_stream(owner.service, "audit")
    append(other, 2)

    put(owner, 4, consumer="a")
    put(owner, 1, consumer="b")
    owner.put(consumer_url("a", "audit"), {"offset": 2}, format="json")

    assert position(stream, "a") == (4, "service:owner")
    assert position(stream, "b") == (1, "service:owner")
    assert position(other, "a") == (2, "service:owner")


# --- one service's consumer is not another's ------------------------------------------------------


def test_a_reader_cannot_move_the_owners_consumer_forward(owner, reader, stream):
    """The reproduction: a reader's PUT used to move the owner's `billing`, so the owner's own move
    back was refused and the events in between were skipped."""
    assert put(owner, 3, consumer="billing").status_code == 200

    moved = put(reader, 5, consumer="billing")
    owners_next = put(owner, 4, consumer="billing")

    assert moved.status_code == 200
    assert moved.json()["service"] == "reader"
    assert owners_next.status_code == 200, owners_next.content
    assert position(stream, "billing", keeper="owner") == (4, "service:owner")
    assert position(stream, "billing", keeper="reader") == (5, "service:reader")


def test_services_keep_consumers_of_the_same_name_side_by_side(owner, reader, writer, stream):
    put(owner, 1, consumer="billing")
    put(reader, 2, consumer="billing")
    put(writer, 5, consumer="billing")

    offsets = {
        client.service.name: client.get(consumer_url("billing")).json()["offset"]
        for client in (owner, reader, writer)
    }

    assert offsets == {"owner": 1, "reader": 2, "writer": 5}


@pytest.mark.parametrize("who", ["reader", "writer"])
def test_another_services_consumer_is_a_404_whether_it_exists_or_not(request, owner, stream, who):
    client = request.getfixturevalue(who)
    put(owner, 3, consumer="billing")
    before = stream_state(stream)

    existing = client.get(consumer_url("billing", service="owner"))
    missing = client.get(consumer_url("nothing", service="owner"))
    nobody = client.get(consumer_url("billing", service="nosuch"))
    moved = put(client, 5, consumer="billing", service="owner")

    for response in (existing, missing, nobody, moved):
        assert_problem(response, 404, "consumer_not_found")
    assert {key: value for key, value in existing.json().items() if key != "detail"} == {
        key: value for key, value in missing.json().items() if key != "detail"
    }
    assert existing.json()["detail"].replace("billing", "nothing") == missing.json()["detail"]
    assert stream_state(stream) == before


def test_naming_ones_own_service_is_the_same_as_naming_none(reader, stream):
    assert put(reader, 2, service="reader").status_code == 200

    assert reader.get(consumer_url("indexer")).json()["offset"] == 2
    assert reader.get(consumer_url("indexer", service="reader")).json()["offset"] == 2


def test_the_stream_owner_reads_another_services_consumer(owner, reader, stream):
    put(reader, 2, consumer="billing")

    response = owner.get(consumer_url("billing", service="reader"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["consumer"], body["service"], body["offset"], body["lag"]) == ("billing", "reader", 2, 3)
    assert_problem(owner.get(consumer_url("never-kept", service="reader")), 404, "consumer_not_found")


def test_the_stream_owner_may_not_move_another_services_consumer(owner, reader, stream):
    put(reader, 2, consumer="billing")
    before = stream_state(stream)

    forward = put(owner, 4, consumer="billing", service="reader")
    back = put(owner, 0, consumer="billing", service="reader", force=True)
    new = put(owner, 1, consumer="fresh", service="reader")

    for response in (forward, back, new):
        assert_problem(response, 403, "forbidden")
    assert stream_state(stream) == before


def test_an_operator_reads_and_moves_any_services_consumer(operator, reader, stream):
    put(reader, 4, consumer="billing")

    read = operator.get(consumer_url("billing", service="reader"))
    moved = put(operator, 5, consumer="billing", service="reader")
    created = put(operator, 1, consumer="replay", service="reader")

    assert (read.status_code, read.json()["offset"]) == (200, 4)
    assert (moved.status_code, moved.json()["service"], moved.json()["offset"]) == (200, "reader", 5)
    assert created.status_code == 200
    assert position(stream, "billing", keeper="reader") == (5, "operator:alice")
    assert position(stream, "replay", keeper="reader") == (1, "operator:alice")
    assert reader.get(consumer_url("replay")).json()["offset"] == 1


def test_an_operator_without_service_addresses_the_stream_owners_consumer(operator, owner, stream):
    put(owner, 2, consumer="billing")

    assert operator.get(consumer_url("billing")).json()["service"] == "owner"
    assert put(operator, 3, consumer="billing").status_code == 200
    assert position(stream, "billing", keeper="owner") == (3, "operator:alice")


def test_an_operator_naming_a_service_that_does_not_exist_gets_404(operator, stream):
    before = stream_state(stream)

    assert_problem(operator.get(consumer_url("billing", service="nosuch")), 404, "consumer_not_found")
    assert_problem(put(operator, 1, consumer="billing", service="nosuch"), 404, "consumer_not_found")
    assert stream_state(stream) == before


@pytest.mark.parametrize("service", ["Upper", "with space", "-dash", "a.b", "x" * 64, "ü"])
def test_a_malformed_service_parameter_is_a_400(owner, reader, stream, service):
    for client in (owner, reader):
        assert_problem(client.get(consumer_url("billing", service=service)), 400, "invalid_service")
        assert_problem(put(client, 1, consumer="billing", service=service), 400, "invalid_service")
    assert not ConsumerPosition.objects.exists()


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


@pytest.mark.parametrize("who", ["owner", "reader", "writer"])
def test_a_service_may_move_its_own_consumer_backwards_with_force(request, stream, who):
    client = request.getfixturevalue(who)
    put(client, 4)

    response = put(client, 1, force=True)

    assert response.status_code == 200, response.content
    assert (response.json()["offset"], response.json()["lag"]) == (1, 4)
    assert position(stream, keeper=who) == (1, f"service:{who}")


def test_an_operator_may_move_a_consumer_backwards_with_force(operator, reader, stream):
    put(reader, 4)

    response = put(operator, 0, service="reader", force=True)

    assert response.status_code == 200, response.content
    assert response.json()["offset"] == 0
    assert position(stream, keeper="reader") == (0, "operator:alice")


def test_moving_backwards_one_services_consumer_leaves_the_others_where_they_are(owner, reader, stream):
    put(owner, 4, consumer="billing")
    put(reader, 4, consumer="billing")

    assert put(reader, 0, consumer="billing", force=True).status_code == 200

    assert position(stream, "billing", keeper="owner") == (4, "service:owner")
    assert position(stream, "billing", keeper="reader") == (0, "service:reader")


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
    keep_position(stream, "indexer", 2)
    before = stream_state(stream)

    assert_problem(outsider.get(consumer_url("indexer")), 404, "collection_not_found")
    assert_problem(outsider.get(consumer_url("indexer", service="owner")), 404, "collection_not_found")
    assert_problem(put(outsider, 1), 404, "collection_not_found")
    assert stream_state(stream) == before


def test_a_position_cannot_be_deleted_through_the_api(owner, stream):
    put(owner, 3)

    assert_problem(owner.delete(consumer_url("indexer")), 405, "method_not_allowed")
    assert position(stream) == (3, "service:owner")
