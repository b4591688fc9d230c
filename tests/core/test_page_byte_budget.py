"""Every list that carries data ends a page once its serialized size passes NUCLEUS_PAGE_MAX_BYTES.

Records, a record's history, events (a change stream's too) and schema versions: a page ends early
after the item that takes it past the budget, at least one item always comes back, and following
`next` (`next_after` for events) yields every item exactly once, in order.
"""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import services
from core.principals import Actor
from tests.actors import TEST_ACTOR
from tests.core.records_support import history_url, record_url, records_url
from tests.core.streams_support import append, events_url, make_stream
from tests.processes import clean_env, manage
from tests.schemas.schema_support import make_schema, obj, versions_url

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="service:owner")
BLOB = 3000  # characters of data per item: an item serializes to a little more
BUDGET = 7000  # two items fit, the third passes the budget: pages of three


def size(item) -> int:
    """The bytes an item takes in the response body (the API's compact JSON)."""
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())


def assert_ends_just_past_the_budget(items: list, budget: int, last_page: bool) -> None:
    """The page stays within the budget but for its last item, and ended early only for the budget."""
    sizes = [size(item) for item in items]
    assert items, "a page always carries at least one item"
    assert sum(sizes[:-1]) <= budget, sizes
    if not last_page:
        assert sum(sizes) > budget, sizes


def walk(client, url: str, params: dict | None = None, max_pages: int = 50) -> list[list[dict]]:
    """The pages of a listing, following `next` until it is null."""
    pages = []
    while url is not None:
        assert len(pages) < max_pages, "pagination does not end"
        response = client.get(url, params)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        body = json.loads(response.content)
        assert set(body) == {"results", "next"}
        pages.append(body["results"])
        url, params = body["next"], None
    return pages


@pytest.fixture
def budget(settings):
    settings.NUCLEUS_PAGE_MAX_BYTES = BUDGET
    return BUDGET


@pytest.fixture
def large_records(items):
    """Ten records of items, k0..k9, each carrying BLOB characters."""
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": f"k{i}", "data": {"i": i, "blob": str(i) * BLOB}} for i in range(10)],
        actor=ACTOR,
    )
    return [f"k{i}" for i in range(10)]


# --- records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordering", ["key", "-key", "updated_at", "-updated_at"])
def test_a_records_page_ends_once_past_the_budget_and_next_continues_without_loss(
    reader, large_records, budget, ordering
):
    pages = walk(reader, records_url(), {"limit": 1000, "ordering": ordering})

    assert [len(page) for page in pages] == [3, 3, 3, 1]
    for number, page in enumerate(pages, start=1):
        assert_ends_just_past_the_budget(page, budget, last_page=number == len(pages))
    listed = [record["key"] for page in pages for record in page]
    assert sorted(listed) == large_records, "every record exactly once"
    if ordering == "key":
        assert listed == large_records
    if ordering == "-key":
        assert listed == large_records[::-1]
    assert all(record["data"]["blob"] == record["key"][1:] * BLOB for page in pages for record in page)


def test_a_records_page_still_honours_a_smaller_limit(reader, large_records, budget):
    pages = walk(reader, records_url(), {"limit": 2})

    assert [len(page) for page in pages] == [2, 2, 2, 2, 2]


def test_a_record_larger_than_the_budget_comes_back_alone_and_the_cursor_moves_on(
    reader, large_records, settings
):
    settings.NUCLEUS_PAGE_MAX_BYTES = 100

    pages = walk(reader, records_url(), {"limit": 1000})

    assert [[record["key"] for record in page] for page in pages] == [[key] for key in large_records]


def test_a_records_page_that_ends_exactly_with_the_last_record_has_no_next(reader, items, budget):
    for i in range(3):
        services.record_create(collection=items, key=f"k{i}", data={"blob": "x" * BLOB}, actor=ACTOR)

    pages = walk(reader, records_url(), {"limit": 1000})

    assert [len(page) for page in pages] == [3]


def test_a_page_ended_by_the_budget_costs_the_queries_of_any_page(
    owner, large_records, budget, django_assert_num_queries
):
    owner.get(records_url(), {"limit": 1})  # warm caches (content types, permissions)

    with django_assert_num_queries(4):  # token, token touch, collection, page
        response = owner.get(records_url(), {"limit": 1000, "where": '{"i": 1}'})
    with django_assert_num_queries(4):
        ended = owner.get(records_url(), {"limit": 1000})

    assert [record["key"] for record in response.json()["results"]] == ["k1"]
    assert len(ended.json()["results"]) == 3


def test_a_list_is_rendered_as_the_api_renders_any_body(reader, items, settings):
    settings.NUCLEUS_PAGE_MAX_BYTES = 10
    data = {"text": "naïve \u2013 日本語 \u2028", "n": 1.5, "none": None, "list": [1, "two"]}
    services.record_create(collection=items, key="a", data=data, actor=ACTOR)
    services.record_create(collection=items, key="b", data={}, actor=ACTOR)
    first = reader.get(records_url())

    response = reader.get(record_url("a"))

    assert first["Content-Type"] == "application/json"
    assert first.content.startswith(b'{"results":[' + response.content + b'],"next":"http://testserver/')
    assert b"\\u2028" in response.content
    problem_only = reader.get(records_url(), HTTP_ACCEPT="application/problem+json")
    assert problem_only["Content-Type"] == "application/problem+json"
    assert problem_only.content == first.content


# --- history ---------------------------------------------------------------------------------------


def test_a_history_page_ends_once_past_the_budget_and_next_continues_without_loss(reader, items, budget):
    services.record_create(collection=items, key="k", data={"blob": "0" * BLOB}, actor=ACTOR)
    for version in range(2, 11):
        services.record_put(collection=items, key="k", data={"blob": str(version % 10) * BLOB}, actor=ACTOR)
    services.record_delete(collection=items, key="k", actor=ACTOR)

    pages = walk(reader, history_url("k"), {"limit": 1000})

    assert [[entry["version"] for entry in page] for page in pages] == [
        [11, 10, 9],
        [8, 7, 6],
        [5, 4, 3],
        [2, 1],
    ]
    for number, page in enumerate(pages, start=1):
        assert_ends_just_past_the_budget(page, budget, last_page=number == len(pages))


def test_a_history_page_ended_by_the_budget_costs_the_queries_of_any_page(reader, items, budget):
    services.record_create(collection=items, key="k", data={"blob": "x" * BLOB}, actor=ACTOR)
    for _ in range(9):
        services.record_put(collection=items, key="k", data={"blob": "x" * BLOB}, actor=ACTOR)
    reader.get(history_url("k"), {"limit": 1})  # warm caches (content types)

    with CaptureQueriesContext(connection) as small:
        assert len(reader.get(history_url("k"), {"limit": 1}).json()["results"]) == 1
    with CaptureQueriesContext(connection) as ended:
        assert len(reader.get(history_url("k"), {"limit": 1000}).json()["results"]) == 3

    assert len(ended) == len(small)


def test_a_history_entry_larger_than_the_budget_comes_back_alone(reader, items, settings):
    settings.NUCLEUS_PAGE_MAX_BYTES = 1
    services.record_create(collection=items, key="k", data={"v": 1}, actor=ACTOR)
    services.record_put(collection=items, key="k", data={"v": 2}, actor=ACTOR)

    pages = walk(reader, history_url("k"))

    assert [[entry["version"] for entry in page] for page in pages] == [[2], [1]]


# --- events and change streams ---------------------------------------------------------------------


def read_stream(client, stream: str, limit: int = 1000, max_pages: int = 50) -> list[dict]:
    """Every page of a stream, following next_after until a page comes back empty."""
    pages, after = [], 0
    while len(pages) < max_pages:
        response = client.get(events_url(stream), {"after": after, "limit": limit})
        assert response.status_code == 200, response.content
        body = json.loads(response.content)
        assert set(body) == {"results", "last_offset", "next_after"}
        if not body["results"]:
            assert body["next_after"] == after
            return pages
        assert body["next_after"] == body["results"][-1]["offset"]
        pages.append(body)
        after = body["next_after"]
    raise AssertionError("reading does not end")


def test_an_events_page_ends_once_past_the_budget_and_next_after_continues_without_loss(
    owner, reader, budget
):
    stream = make_stream(owner.service, readers=("reader",))
    events = [{"type": "big", "data": {"n": n, "blob": str(n % 10) * BLOB}} for n in range(10)]
    services.stream_append(stream=stream, events=events, actor=TEST_ACTOR)

    pages = read_stream(reader, "events")

    assert [[item["offset"] for item in page["results"]] for page in pages] == [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
        [10],
    ]
    assert {page["last_offset"] for page in pages} == {10}
    for number, page in enumerate(pages, start=1):
        assert_ends_just_past_the_budget(page["results"], budget, last_page=number == len(pages))
    assert [item["data"]["n"] for page in pages for item in page["results"]] == list(range(10))


def test_an_event_larger_than_the_budget_comes_back_alone(owner, reader, settings):
    settings.NUCLEUS_PAGE_MAX_BYTES = 1
    stream = make_stream(owner.service, readers=("reader",))
    append(stream, 3)

    pages = read_stream(reader, "events")

    assert [[item["offset"] for item in page["results"]] for page in pages] == [[1], [2], [3]]


def test_an_events_page_ended_by_the_budget_costs_the_queries_of_any_page(owner, reader, budget):
    stream = make_stream(owner.service, readers=("reader",))
    services.stream_append(
        stream=stream, events=[{"type": "big", "data": {"blob": "x" * BLOB}}] * 10, actor=TEST_ACTOR
    )
    reader.get(events_url(), {"limit": 1})  # warm caches

    with CaptureQueriesContext(connection) as small:
        assert len(reader.get(events_url(), {"limit": 1}).json()["results"]) == 1
    with CaptureQueriesContext(connection) as ended:
        assert len(reader.get(events_url(), {"limit": 1000}).json()["results"]) == 3

    assert len(ended) == len(small)


def test_a_change_stream_page_ends_once_past_the_budget_without_losing_a_change(owner, reader, items, budget):
    changes = make_stream(owner.service, "changes", readers=("reader",))
    services.collection_update(collection=items, change_stream=changes, actor=TEST_ACTOR)
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": f"k{i}", "data": {"blob": str(i) * BLOB}} for i in range(5)],
        actor=ACTOR,
    )
    for i in range(5):
        services.record_put(collection=items, key=f"k{i}", data={"blob": "u" * BLOB}, actor=ACTOR)

    pages = read_stream(reader, "changes")

    assert [len(page["results"]) for page in pages] == [3, 3, 3, 1]
    changes_read = [(item["type"], item["data"]["key"]) for page in pages for item in page["results"]]
    assert changes_read == [("record.created", f"k{i}") for i in range(5)] + [
        ("record.updated", f"k{i}") for i in range(5)
    ]


# --- schema versions -------------------------------------------------------------------------------


def test_a_schema_versions_page_ends_once_past_the_budget_and_next_continues_without_loss(owner, budget):
    definitions = [obj({"n": {"type": "integer"}}, description=str(i) * BLOB) for i in range(7)]
    make_schema(owner.service, "people", *definitions)

    pages = walk(owner, versions_url("people"), {"limit": 1000})

    assert [[version["version"] for version in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    for number, page in enumerate(pages, start=1):
        assert_ends_just_past_the_budget(page, budget, last_page=number == len(pages))


def test_a_schema_versions_page_ended_by_the_budget_costs_the_queries_of_any_page(owner, budget):
    definitions = [obj({"n": {"type": "integer"}}, description=str(i) * BLOB) for i in range(7)]
    make_schema(owner.service, "people", *definitions)
    owner.get(versions_url("people"), {"limit": 1})  # warm caches

    with CaptureQueriesContext(connection) as small:
        assert len(owner.get(versions_url("people"), {"limit": 1}).json()["results"]) == 1
    with CaptureQueriesContext(connection) as ended:
        assert len(owner.get(versions_url("people"), {"limit": 1000}).json()["results"]) == 3

    assert len(ended) == len(small)


# --- the setting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-8", "8MiB"])
def test_a_budget_that_is_not_a_positive_number_of_bytes_stops_start_up_in_one_line(tmp_path, value):
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", NUCLEUS_PAGE_MAX_BYTES=value)

    result = manage("check", env=env)

    assert result.returncode != 0
    assert result.stderr.strip().startswith("Nucleus is not configured: NUCLEUS_PAGE_MAX_BYTES")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
