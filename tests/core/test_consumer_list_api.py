"""GET /collections/{name}/consumers/: your consumers with their lag; the stream owner and operators: all."""

import pytest

from tests.core.records_support import assert_problem
from tests.core.streams_support import append, consumers_url, keep_position, make_stream, stream_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(owner, reader, writer, outsider):
    """The stream `events` of owner with 10 events; owner, reader and writer keep consumers of it."""
    stream = make_stream(owner.service, readers=("reader",), writers=("writer",))
    append(stream, 10)
    keep_position(stream, "billing", 4, keeper="owner")
    keep_position(stream, "audit", 10, keeper="owner")
    keep_position(stream, "billing", 7, keeper="reader")
    keep_position(stream, "search", 1, keeper="writer")
    return stream


def listed(response) -> list[tuple]:
    """(service, consumer, offset, lag) of each listed consumer, in the order listed."""
    assert response.status_code == 200, response.content
    return [
        (item["service"], item["consumer"], item["offset"], item["lag"])
        for item in response.json()["results"]
    ]


def test_a_reader_lists_only_its_own_consumers_with_their_lag(reader, stream):
    response = reader.get(consumers_url())

    assert listed(response) == [("reader", "billing", 7, 3)]
    item = response.json()["results"][0]
    assert item["last_offset"] == 10
    assert item["updated_at"] is not None
    assert response.json()["next"] is None


def test_a_writer_lists_only_its_own_consumers(writer, stream):
    assert listed(writer.get(consumers_url())) == [("writer", "search", 1, 9)]


def test_the_stream_owner_lists_every_services_consumers_with_their_service(owner, stream):
    assert listed(owner.get(consumers_url())) == [
        ("owner", "audit", 10, 0),
        ("owner", "billing", 4, 6),
        ("reader", "billing", 7, 3),
        ("writer", "search", 1, 9),
    ]


def test_an_operator_lists_every_consumer(operator, stream):
    assert [item[:2] for item in listed(operator.get(consumers_url()))] == [
        ("owner", "audit"),
        ("owner", "billing"),
        ("reader", "billing"),
        ("writer", "search"),
    ]


def test_a_service_without_consumers_gets_an_empty_list(owner, reader):
    make_stream(owner.service, "quiet", readers=("reader",))

    response = reader.get(consumers_url("quiet"))

    assert response.json() == {"results": [], "next": None}


def test_the_lag_follows_appends(reader, stream):
    append(stream, 5)

    assert listed(reader.get(consumers_url())) == [("reader", "billing", 7, 8)]


def test_the_list_is_paged_with_a_cursor(owner, stream):
    first = owner.get(consumers_url(), {"limit": 3})
    second = owner.get(first.json()["next"])

    assert [item[:2] for item in listed(first)] == [
        ("owner", "audit"),
        ("owner", "billing"),
        ("reader", "billing"),
    ]
    assert listed(second) == [("writer", "search", 1, 9)]
    assert second.json()["next"] is None


def test_a_readers_pages_never_reach_other_services_consumers(owner, reader, stream):
    for n in range(3):
        keep_position(stream, f"r{n}", n, keeper="reader")

    first = reader.get(consumers_url(), {"limit": 2})
    second = reader.get(first.json()["next"])

    assert [item[1] for item in listed(first) + listed(second)] == ["billing", "r0", "r1", "r2"]
    assert {item[0] for item in listed(first) + listed(second)} == {"reader"}
    assert second.json()["next"] is None


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_listing_takes_the_same_queries_for_any_page_size(
    owner, reader, stream, limit, django_assert_num_queries
):
    # token lookup, last_used_at, the stream with the caller's grant, the page (lag read in the same query)
    with django_assert_num_queries(4):
        response = owner.get(consumers_url(), {"limit": limit})
    assert len(response.json()["results"]) == limit


def test_an_outsider_gets_404_and_nothing_changes(outsider, stream):
    before = stream_state(stream)

    assert_problem(outsider.get(consumers_url()), 404, "collection_not_found")
    assert stream_state(stream) == before


def test_on_a_records_collection_it_is_404_not_a_stream(owner, items):
    assert_problem(owner.get(consumers_url("items")), 404, "not_a_stream")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "WyJ4Il0",
        "WyIxIiwgMl0",
        "WyJhYmMiLCAieCJd",
        "WyI5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OSIsICJ4Il0",
    ],
)
def test_a_forged_cursor_is_a_400(owner, stream, cursor):
    assert_problem(owner.get(consumers_url(), {"cursor": cursor}), 400, "invalid_cursor")


@pytest.mark.parametrize("slash", [True, False])
def test_it_is_served_with_and_without_the_trailing_slash(reader, stream, slash):
    url = consumers_url() if slash else consumers_url().rstrip("/")

    assert listed(reader.get(url)) == [("reader", "billing", 7, 3)]
