"""GET /collections/{name}/records/: ordering, cursor pagination, filters, visibility and query count."""

import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection, transaction

from core import selectors, services
from core.models import Record
from core.principals import Actor
from tests.actors import TEST_ACTOR
from tests.core.records_support import assert_problem, records_url

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="service:owner")
BASE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def keys_of(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [record["key"] for record in response.json()["results"]]


def walk(client, url: str, params: dict, max_pages: int = 100) -> tuple[list[str], int]:
    """Every key of a listing, following `next`; returns (keys, pages)."""
    response = client.get(url, params)
    keys, pages = keys_of(response), 1
    while (next_url := response.json()["next"]) is not None:
        assert pages < max_pages, "pagination does not end"
        assert next_url.startswith("http://testserver" + url)
        response = client.get(next_url)
        keys += keys_of(response)
        pages += 1
    return keys, pages


@pytest.fixture
def timed(items):
    """25 records whose updated_at order differs from their key order, with ties broken by key."""
    keys = [f"k{i:02d}" for i in range(25)]
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": k, "data": {"i": i}} for i, k in enumerate(keys)],
        actor=ACTOR,
    )
    moments = {}
    for i, key in enumerate(keys):
        # Reverse order in blocks of three: k00..k02 share a moment, and later keys are older.
        moments[key] = BASE - timedelta(minutes=i // 3)
        Record.objects.filter(collection=items, key=key).update(updated_at=moments[key])
    return moments


def expected_order(moments: dict, ordering: str) -> list[str]:
    if ordering == "key":
        return sorted(moments)
    if ordering == "-key":
        return sorted(moments, reverse=True)
    if ordering == "updated_at":
        return sorted(moments, key=lambda k: (moments[k], k))
    return sorted(moments, key=lambda k: (moments[k], k), reverse=True)


@pytest.mark.parametrize("ordering", ["key", "-key", "updated_at", "-updated_at"])
def test_it_orders_records(owner, timed, ordering):
    response = owner.get(records_url(), {"ordering": ordering, "limit": 1000})

    assert keys_of(response) == expected_order(timed, ordering)
    assert response.json()["next"] is None


def test_it_orders_by_key_by_default(owner, timed):
    assert keys_of(owner.get(records_url())) == sorted(timed)


def test_it_rejects_an_unknown_ordering(owner, timed):
    assert_problem(owner.get(records_url(), {"ordering": "data"}), 400, "invalid_ordering")


@pytest.mark.parametrize("ordering", ["key", "-key", "updated_at", "-updated_at"])
@pytest.mark.parametrize("limit", [1, 7, 25])
def test_cursor_pagination_walks_every_record_once(owner, timed, ordering, limit):
    keys, pages = walk(owner, records_url(), {"ordering": ordering, "limit": limit})

    assert keys == expected_order(timed, ordering)
    assert pages == -(-25 // limit)


def test_the_next_url_keeps_the_filters(owner, timed):
    response = owner.get(records_url(), {"ordering": "-key", "key_prefix": "k1", "limit": 4})

    query = parse_qs(urlsplit(response.json()["next"]).query)
    assert query["ordering"] == ["-key"]
    assert query["key_prefix"] == ["k1"]
    assert query["limit"] == ["4"]
    assert "cursor" in query


def test_a_page_ends_without_next_when_the_records_run_out(owner, timed):
    response = owner.get(records_url(), {"limit": 25})

    assert len(keys_of(response)) == 25
    assert response.json()["next"] is None


def test_writes_between_pages_do_not_shift_the_cursor(owner, items, timed):
    first = owner.get(records_url(), {"limit": 10})
    services.record_delete(collection=items, key="k00", actor=ACTOR)
    services.record_create(collection=items, key="k00a", data={}, actor=ACTOR)

    second = owner.get(first.json()["next"])

    assert keys_of(second) == [f"k{i}" for i in range(10, 20)]


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1", "1.5", ""])
def test_it_rejects_a_limit_out_of_bounds(owner, timed, limit):
    assert_problem(owner.get(records_url(), {"limit": limit}), 400, "invalid_limit")


@pytest.mark.parametrize("limit", [1, 1000])
def test_it_accepts_the_limit_bounds(owner, timed, limit):
    assert len(keys_of(owner.get(records_url(), {"limit": limit}))) == min(limit, 25)


def test_it_defaults_to_100_records_a_page(owner, items):
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": f"r{i:03d}", "data": {}} for i in range(101)],
        actor=ACTOR,
    )

    response = owner.get(records_url())

    assert len(keys_of(response)) == 100
    assert response.json()["next"] is not None


@pytest.mark.parametrize("cursor", ["garbage", "WzEsMl0", "e30"])
def test_it_rejects_a_cursor_it_did_not_issue(owner, timed, cursor):
    assert_problem(owner.get(records_url(), {"cursor": cursor}), 400, "invalid_cursor")


def test_it_rejects_a_cursor_of_another_ordering(owner, timed):
    by_key = owner.get(records_url(), {"limit": 2}).json()["next"]
    cursor = parse_qs(urlsplit(by_key).query)["cursor"][0]

    assert_problem(
        owner.get(records_url(), {"cursor": cursor, "ordering": "updated_at"}), 400, "invalid_cursor"
    )


# --- filters -------------------------------------------------------------------------------------


def test_key_prefix_selects_keys_starting_with_it(owner, items):
    for key in ["ab", "abc", "abd", "Abe", "b-ab", "a.b"]:
        services.record_create(collection=items, key=key, data={}, actor=ACTOR)

    assert keys_of(owner.get(records_url(), {"key_prefix": "ab"})) == ["ab", "abc", "abd"]
    assert keys_of(owner.get(records_url(), {"key_prefix": "Ab"})) == ["Abe"]
    assert keys_of(owner.get(records_url(), {"key_prefix": "a."})) == ["a.b"]
    assert keys_of(owner.get(records_url(), {"key_prefix": "a_"})) == []
    assert keys_of(owner.get(records_url(), {"key_prefix": "a%"})) == []
    assert keys_of(owner.get(records_url(), {"key_prefix": "zz"})) == []


def test_updated_after_and_before_select_a_time_window(owner, timed):
    # k00..k02 are at BASE, k03..k05 a minute earlier, and so on.
    after = (BASE - timedelta(minutes=2)).isoformat()
    before = BASE.isoformat().replace("+00:00", "Z")

    assert keys_of(owner.get(records_url(), {"updated_after": after})) == [
        "k00",
        "k01",
        "k02",
        "k03",
        "k04",
        "k05",
    ]
    assert keys_of(owner.get(records_url(), {"updated_after": after, "updated_before": before})) == [
        "k03",
        "k04",
        "k05",
    ]
    assert len(keys_of(owner.get(records_url(), {"updated_before": before}))) == 22


@pytest.mark.parametrize("offset", [timedelta(hours=2), timedelta(hours=-5, minutes=-30)])
def test_updated_after_understands_other_time_zones(owner, timed, offset):
    moment = (BASE - timedelta(seconds=30)).astimezone(timezone(offset))

    assert keys_of(owner.get(records_url(), {"updated_after": moment.isoformat()})) == ["k00", "k01", "k02"]


@pytest.mark.parametrize("name", ["updated_after", "updated_before"])
@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00"])
def test_it_rejects_a_bad_date(owner, timed, name, value):
    assert_problem(owner.get(records_url(), {name: value}), 400, "invalid_filter")


WHERE_DATA = {
    "a": {
        "status": "open",
        "n": 1,
        "flag": True,
        "tags": ["x", "y"],
        "meta": {"owner": "ann", "level": {"deep": 1}},
        "none": None,
    },
    "b": {"status": "closed", "n": 2, "flag": False, "tags": ["y"], "meta": {"owner": "bob"}, "none": 0},
    "c": {"status": "open", "n": 1.5, "tags": [], "meta": {"owner": "ann", "extra": True}, "name": "Zoë"},
    "d": {"status": "open", "n": "1", "tags": "y"},
    "e": {"n": 1.0, "tags": [1, 2, True, None], "weird.key": {"x y": "z"}},
}


@pytest.fixture
def varied(items):
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": k, "data": d} for k, d in WHERE_DATA.items()],
        actor=ACTOR,
    )
    return items


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"status": "open"}, ["a", "c", "d"]),
        ({"status": "closed"}, ["b"]),
        ({"status": "OPEN"}, []),
        ({"name": "Zoë"}, ["c"]),
        ({"n": 1}, ["a", "e"]),
        ({"n": 1.5}, ["c"]),
        ({"n": "1"}, ["d"]),
        ({"flag": True}, ["a"]),
        ({"flag": False}, ["b"]),
        ({"flag": 1}, []),
        ({"none": None}, ["a"]),
        ({"none": 0}, ["b"]),
        ({"none": False}, []),
        ({"tags": ["y"]}, ["a", "b"]),
        ({"tags": ["y", "x"]}, ["a"]),
        ({"tags": []}, ["a", "b", "c", "e"]),
        ({"tags": [True, None]}, ["e"]),
        ({"tags": [1]}, ["e"]),
        ({"tags": "y"}, ["d"]),
        ({"tags": ["z"]}, []),
        ({"meta": {"owner": "ann"}}, ["a", "c"]),
        ({"meta": {"level": {"deep": 1}}}, ["a"]),
        ({"meta": {}}, ["a", "b", "c"]),
        ({"meta": {"owner": "ann", "extra": True}}, ["c"]),
        ({"status": "open", "meta": {"owner": "ann"}}, ["a", "c"]),
        ({"weird.key": {"x y": "z"}}, ["e"]),
        ({"missing": None}, []),
        ({}, ["a", "b", "c", "d", "e"]),
    ],
)
def test_where_selects_records_whose_data_contains_it(owner, varied, where, expected):
    response = owner.get(records_url(), {"where": json.dumps(where)})

    assert keys_of(response) == expected
    assert all(r["data"] == WHERE_DATA[r["key"]] for r in response.json()["results"])


def test_where_combines_with_the_other_filters_and_paging(owner, varied):
    keys, pages = walk(owner, records_url(), {"where": '{"status": "open"}', "limit": 1, "ordering": "-key"})

    assert keys == ["d", "c", "a"]
    assert pages == 3
    assert keys_of(owner.get(records_url(), {"where": '{"status": "open"}', "key_prefix": "c"})) == ["c"]


def test_where_compares_integers_beyond_64_bits_on_postgresql_and_refuses_them_on_sqlite(owner, items):
    services.record_create(collection=items, key="big", data={"n": 10**30, "m": -(2**63)}, actor=ACTOR)

    assert keys_of(owner.get(records_url(), {"where": json.dumps({"m": -(2**63)})})) == ["big"]
    response = owner.get(records_url(), {"where": json.dumps({"n": 10**30})})
    if connection.vendor == "postgresql":
        assert keys_of(response) == ["big"]
        assert keys_of(owner.get(records_url(), {"where": json.dumps({"n": 10**30 + 1})})) == []
    else:
        assert_problem(response, 400, "invalid_filter")
        assert_problem(owner.get(records_url(), {"where": json.dumps({"a": [2**64]})}), 400, "invalid_filter")


def test_where_matches_objects_in_arrays_on_postgresql_and_refuses_them_on_sqlite(owner, items):
    services.record_create(collection=items, key="o", data={"lines": [{"sku": "a", "qty": 1}]}, actor=ACTOR)

    response = owner.get(records_url(), {"where": json.dumps({"lines": [{"sku": "a"}]})})

    if connection.vendor == "postgresql":
        assert keys_of(response) == ["o"]
    else:
        assert_problem(response, 400, "invalid_filter")


@pytest.mark.parametrize("where", ["[1]", "1", r'{"s": "\u0000"}', '"open"', "null", "{", "status=open"])
def test_where_must_be_a_json_object(owner, varied, where):
    assert_problem(owner.get(records_url(), {"where": where}), 400, "invalid_filter")


# --- visibility and cost -------------------------------------------------------------------------


def test_list_is_visible_to_owner_reader_writer_and_operator_only(
    owner, reader, writer, outsider, operator, varied
):
    for client in (owner, reader, writer, operator):
        assert keys_of(client.get(records_url())) == list(WHERE_DATA)
    assert_problem(outsider.get(records_url()), 404, "collection_not_found")


def test_list_shows_only_the_records_of_its_collection(owner, varied):
    other = services.collection_create(actor=TEST_ACTOR, name="other", owner=owner.service)
    services.record_create(collection=other, key="a", data={"status": "open"}, actor=ACTOR)

    assert keys_of(owner.get(records_url("other"))) == ["a"]
    assert keys_of(owner.get(records_url(), {"where": '{"status": "open"}'})) == ["a", "c", "d"]


def test_the_list_query_count_does_not_grow_with_the_page(owner, items, django_assert_num_queries):
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": f"r{i:03d}", "data": {"i": i}} for i in range(600)],
        actor=ACTOR,
    )
    owner.get(records_url(), {"limit": 1})  # warm caches (content types, permissions)

    with django_assert_num_queries(4):  # token, token touch, collection, page
        small = owner.get(records_url(), {"limit": 5})
    with django_assert_num_queries(4):
        large = owner.get(records_url(), {"limit": 500, "where": '{"i": 1}'})
    with django_assert_num_queries(4):
        page = owner.get(records_url(), {"limit": 500, "ordering": "-updated_at"})

    assert len(keys_of(small)) == 5
    assert keys_of(large) == ["r001"]
    assert len(keys_of(page)) == 500


@pytest.mark.postgres
def test_where_is_served_by_the_gin_index(items):
    for start in (0, 1000):
        services.records_bulk(
            collection=items,
            mode="insert",
            items=[
                {"key": f"r{i:04d}", "data": {"status": "open" if i % 50 == 0 else "closed", "i": i}}
                for i in range(start, start + 1000)
            ],
            actor=ACTOR,
        )
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        page, _ = selectors.records_page(
            collection=items, limit=10, encode=lambda r: r.key.encode(), where={"status": "open"}
        )
    assert page == [f"r{i:04d}".encode() for i in range(0, 500, 50)]
    sql, params = next((sql, params) for sql, params in captured if "@>" in sql)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE core_record")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "core_record_data_gin" in plan, plan


@pytest.mark.postgres
def test_key_prefix_is_served_by_the_prefix_index(items):
    services.records_bulk(
        collection=items,
        mode="insert",
        items=[{"key": f"{'ab' if i % 100 == 0 else 'zz'}{i:04d}", "data": {}} for i in range(1000)],
        actor=ACTOR,
    )
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        page, _ = selectors.records_page(
            collection=items, limit=100, encode=lambda r: r.key.encode(), key_prefix="ab"
        )
    assert len(page) == 10
    sql, params = next((sql, params) for sql, params in captured if "LIKE" in sql)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE core_record")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "core_record_key_prefix" in plan, plan
