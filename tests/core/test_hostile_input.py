"""Hostile input the targeted tests of test_problems_api.py do not already cover.

- path traversal and odd Unicode in collection names, keys and other names in the URL: a 404 or a 422
  (a 400 for a NUL), never a 500, and never a read or write of another collection;
- SQL metacharacters in where, key_prefix, ordering, cursor and the other query parameters: bound as
  values, never executed; LIKE wildcards in key_prefix match literally;
- numbers too large for a double (1e309 and the like): refused as not finite wherever data is written;
- a wrong Content-Type (415) and a JSON body that is not an object (400/422) on every endpoint that
  takes a body.

Each refusal leaves the database as it was.
"""

import http.client
import json
import re
from urllib.parse import quote, urlsplit

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from reversion.models import Revision, Version

from backups.models import Backup
from core import services
from core.models import KEY_PATTERN, Collection, ConsumerPosition, Event, Grant, Record, RecordTombstone
from core.pages import encode_cursor
from schemas import services as schema_services
from schemas.models import Schema, SchemaVersion
from tests.actors import TEST_ACTOR
from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db

SECRET = {"secret": "outsider's data"}
ITEM_KEYS = ["a", "a.b", "a1", "a_1", "ab1", "b", "q"]
QUOTED = {"name": "O'Brien'; DROP TABLE core_record;--", "pct": "100%", "under": "a_b", "bs": "a\\b"}
BACKUP_ID = "20200101-000000-000000"


@pytest.fixture
def world(owner, outsider, items):
    """items (owner's; reader reads, writer writes) with records, a stream `feed` with an event and a
    consumer, a schema `item`, the outsider's collection `secret` with record `x`, and a backup entry."""
    for key in ITEM_KEYS:
        data = QUOTED if key == "q" else {"n": 1}
        services.record_put(collection=items, key=key, data=data, actor=TEST_ACTOR)
    feed = services.collection_create(actor=TEST_ACTOR, name="feed", owner=owner.service, kind="stream")
    services.stream_append(stream=feed, events=[{"type": "made", "data": {}}], actor=TEST_ACTOR)
    services.consumer_position_set(stream=feed, consumer="worker", offset=1, actor=TEST_ACTOR)
    schema = schema_services.schema_create(name="item", owner=owner.service)
    schema_services.schema_version_register(schema=schema, definition={"type": "object"}, actor=TEST_ACTOR)
    secret = services.collection_create(actor=TEST_ACTOR, name="secret", owner=outsider.service)
    services.record_put(collection=secret, key="x", data=SECRET, actor=TEST_ACTOR)
    Backup.objects.create(
        id=BACKUP_ID,
        file=f"nucleus-{BACKUP_ID}.dump",
        size=1,
        sha256="0" * 64,
        engine=connection.vendor,
        database="nucleus",
        created_at=timezone.now(),
        duration_ms=1,
        created_by="operator:alice",
    )
    return items


def database_state() -> dict:
    """Every row a request could write, by content (idempotency keys aside: refusals are replayed)."""
    return {
        "collections": sorted(Collection.objects.values_list("name", "owner__name", "kind", "description")),
        "grants": sorted(Grant.objects.values_list("collection__name", "service__name", "access")),
        "records": sorted(
            (name, key, version, json.dumps(data, sort_keys=True))
            for name, key, version, data in Record.objects.values_list(
                "collection__name", "key", "version", "data"
            )
        ),
        "tombstones": RecordTombstone.objects.count(),
        "events": Event.objects.count(),
        "positions": sorted(ConsumerPosition.objects.values_list("consumer", "offset")),
        "schemas": sorted(Schema.objects.values_list("name", "compatibility", "description")),
        "versions": SchemaVersion.objects.count(),
        "history": (Revision.objects.count(), Version.objects.count()),
        "backups": Backup.objects.count(),
    }


@pytest.fixture
def unchanged(world):
    before = database_state()
    yield
    assert database_state() == before


def raw(client, method: str, path: str, body: bytes | str = b"", content_type="application/json", **extra):
    if isinstance(body, str):
        body = body.encode("utf-8")
    return client.generic(method, path, body, content_type=content_type, **extra)


def assert_no_leak(response) -> None:
    assert response.status_code < 500, response.content[:500]
    assert b"outsider's data" not in response.content


# --- path traversal and odd names in the URL -------------------------------------------------------

TRAVERSALS = [
    pytest.param("/api/v1/collections/items/records/../../secret/records/x/", id="dot-dot"),
    pytest.param("/api/v1/collections/items/records/%2e%2e/%2e%2e/secret/records/x/", id="encoded-dot-dot"),
    pytest.param(
        "/api/v1/collections/items/records/%2E%2E%2F%2E%2E%2Fsecret%2Frecords%2Fx/", id="all-encoded"
    ),
    pytest.param("/api/v1/collections/items/records/a%2F..%2F..%2F..%2Fsecret%2Frecords%2Fx/", id="slash"),
    pytest.param("/api/v1/collections/items%2F..%2Fsecret/records/x/", id="slash-in-name"),
    pytest.param("/api/v1/collections/..%2Fsecret/records/x/", id="dot-dot-slash-in-name"),
    pytest.param("/api/v1/collections/%2e%2e/records/x/", id="name-dot-dot"),
    pytest.param("/api/v1/collections/./records/x/", id="name-dot"),
    pytest.param("/api/v1/collections/items/records/..%5C..%5Csecret%5Crecords%5Cx/", id="backslashes"),
    pytest.param("/api/v1/collections/items/records/%252e%252e%252fsecret/", id="double-encoded"),
    pytest.param("/api/v1/collections/items/records/..;/..;/secret/records/x/", id="semicolon-segments"),
    pytest.param("/api/v1/collections/secret/../items/records/x/", id="dot-dot-after-secret"),
]
WRITES = {"PUT": '{"data": {"pwned": true}}', "PATCH": '{"data": {"pwned": true}}'}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "POST"])
@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_reaches_no_other_collection(owner, unchanged, method, path):
    body = WRITES.get(method, '{"version": 1}' if method == "POST" else "")
    response = raw(owner, method, path, body)

    assert_no_leak(response)
    assert response.status_code in (404, 405, 422), response.content
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("path", ["/api/v1/collections/secret/records/x/", "/api/v1/collections/secret/"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_the_direct_path_to_another_services_collection_is_404(owner, unchanged, method, path):
    assert_problem(raw(owner, method, path), 404, "collection_not_found")


@pytest.mark.django_db(transaction=True)
def test_path_traversal_over_real_http_is_not_normalised_into_another_collection(live_server, owner, world):
    """A real server gets the raw request line: no client cleans up the dot segments on the way."""
    before = database_state()
    url = urlsplit(live_server.url)
    for method, path in [
        ("GET", "/api/v1/collections/items/records/../../secret/records/x/"),
        ("DELETE", "/api/v1/collections/items/records/../../secret/records/x/"),
        ("GET", "/api/v1/collections/items/records/%2e%2e/%2e%2e/secret/records/x/"),
        ("DELETE", "/api/v1/collections/items/records/a%2F..%2F..%2F..%2Fsecret%2Frecords%2Fx/"),
        ("GET", "/api/v1/collections/items%2F..%2Fsecret/records/x/"),
    ]:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            conn.request(method, path, headers={"Authorization": f"Bearer {owner.token}"})
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        assert response.status in (404, 422), (method, path, response.status, payload[:300])
        assert response.getheader("Content-Type").startswith("application/problem+json"), (method, path)
        assert b"outsider's data" not in payload
    assert database_state() == before


ODD_NAMES = [
    pytest.param("items\u200b", id="zero-width-space"),
    pytest.param("\u200bitems", id="leading-zero-width"),
    pytest.param("items\u200d", id="zero-width-joiner"),
    pytest.param("\u202eitems", id="rtl-override"),
    pytest.param("smeti\u202e", id="rtl-override-trailing"),
    pytest.param("\u200fitems", id="rtl-mark"),
    pytest.param("\ufeffitems", id="byte-order-mark"),
    pytest.param("ite\u0301ms", id="combining-accent"),
    pytest.param("\uff49\uff54\uff45\uff4d\uff53", id="fullwidth-nfkc-items"),
    pytest.param("ITEMS", id="upper-case"),
    pytest.param("items ", id="trailing-space"),
    pytest.param("items\n", id="newline"),
    pytest.param("items\t", id="tab"),
    pytest.param("\U0001f600", id="emoji"),
    pytest.param("x" * 5000, id="5000-characters"),
    pytest.param("a." * 60 + "a", id="long-dotted"),
]
# Upper case and dots are fine in keys (not in collection names): the key tests leave those two out.
ODD_KEYS = [param for param in ODD_NAMES if param.id not in ("upper-case", "long-dotted")]
# (method, path pattern) for an odd collection name: nothing by that name exists.
NAME_ROUTES = [
    ("GET", "/api/v1/collections/{}/"),
    ("PATCH", "/api/v1/collections/{}/"),
    ("DELETE", "/api/v1/collections/{}/"),
    ("GET", "/api/v1/collections/{}/grants/"),
    ("GET", "/api/v1/collections/{}/records/"),
    ("POST", "/api/v1/collections/{}/records/"),
    ("GET", "/api/v1/collections/{}/records/a/"),
    ("PUT", "/api/v1/collections/{}/records/a/"),
    ("DELETE", "/api/v1/collections/{}/records/a/"),
    ("POST", "/api/v1/collections/{}/records/bulk/"),
    ("GET", "/api/v1/collections/{}/records/a/history/"),
    ("GET", "/api/v1/collections/{}/events/"),
    ("POST", "/api/v1/collections/{}/events/"),
    ("GET", "/api/v1/collections/{}/consumers/worker/"),
]
BODIES = {
    "POST": '{"key": "k", "data": {}}',
    "PUT": '{"data": {}}',
    "PATCH": '{"description": "x"}',
}


@pytest.mark.parametrize("name", ODD_NAMES)
def test_an_odd_collection_name_in_the_url_is_404(owner, unchanged, name):
    for method, pattern in NAME_ROUTES:
        body = BODIES.get(method, "")
        if pattern.endswith("/bulk/"):
            body = '{"mode": "insert", "records": [{"data": {}}]}'
        elif pattern.endswith("/events/") and method == "POST":
            body = '{"events": [{"type": "t", "data": {}}]}'
        response = raw(owner, method, pattern.format(quote(name, safe="")), body)
        assert_no_leak(response)
        assert_problem(response, 404, "collection_not_found")


@pytest.mark.parametrize("name", ODD_NAMES)
def test_an_odd_schema_or_service_name_in_the_url_is_404(owner, unchanged, name):
    quoted = quote(name, safe="")
    for method, path in [
        ("GET", f"/api/v1/schemas/{quoted}/"),
        ("GET", f"/api/v1/schemas/{quoted}/versions/"),
        ("GET", f"/api/v1/schemas/{quoted}/versions/1/"),
        ("GET", f"/api/v1/schemas/item/versions/{quoted}/"),
    ]:
        response = raw(owner, method, path)
        assert_no_leak(response)
        assert response.status_code == 404, (path, response.content)
    assert_problem(raw(owner, "DELETE", f"/api/v1/collections/items/grants/{quoted}/"), 404)
    body = '{"service": ' + json.dumps(name) + ', "access": "write"}'
    assert_problem(raw(owner, "POST", "/api/v1/collections/items/grants/", body), 422)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_an_odd_key_in_the_url_is_404_to_read_and_422_to_write(owner, unchanged, key):
    quoted = quote(key, safe="")
    for method, path in [
        ("GET", f"/api/v1/collections/items/records/{quoted}/"),
        ("DELETE", f"/api/v1/collections/items/records/{quoted}/"),
        ("GET", f"/api/v1/collections/items/records/{quoted}/history/"),
        ("PATCH", f"/api/v1/collections/items/records/{quoted}/"),
    ]:
        response = raw(owner, method, path, '{"data": {"n": 2}}' if method == "PATCH" else "")
        assert_no_leak(response)
        assert_problem(response, 404, "record_not_found")
    # A write that would create the record refuses the key; so does a consumer position named so.
    put = raw(owner, "PUT", f"/api/v1/collections/items/records/{quoted}/", '{"data": {}}')
    assert_problem(put, 422, "invalid_key")
    assert_problem(raw(owner, "GET", f"/api/v1/collections/feed/consumers/{quoted}/"), 422, "invalid_key")
    consumer = raw(owner, "PUT", f"/api/v1/collections/feed/consumers/{quoted}/", '{"offset": 0}')
    assert_problem(consumer, 422, "invalid_key")


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_in_bodies_are_refused(owner, unchanged, name):
    collection = raw(owner, "POST", "/api/v1/collections/", json.dumps({"name": name}))
    assert collection.status_code == 422, collection.content
    schema = raw(owner, "POST", "/api/v1/schemas/", json.dumps({"name": name}))
    assert schema.status_code == 422, schema.content
    if re.fullmatch(KEY_PATTERN, name):
        return  # a valid key (upper case, dots): the record tests take it
    record = raw(owner, "POST", "/api/v1/collections/items/records/", json.dumps({"key": name, "data": {}}))
    assert_problem(record, 422, "invalid_key")
    bulk = {"mode": "upsert", "records": [{"key": name, "data": {}}]}
    assert_problem(raw(owner, "POST", "/api/v1/collections/items/records/bulk/", json.dumps(bulk)), 422)
    operation = {"op": "put", "collection": "items", "key": name, "data": {}}
    transaction = raw(owner, "POST", "/api/v1/transactions/", json.dumps({"operations": [operation]}))
    assert_problem(transaction, 422)
    elsewhere = {"op": "put", "collection": name, "key": "k", "data": {}}
    transaction = raw(owner, "POST", "/api/v1/transactions/", json.dumps({"operations": [elsewhere]}))
    assert transaction.status_code in (404, 422), transaction.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/collections/items%00/",
        "/api/v1/collections/items/records/a%00/",
        "/api/v1/collections/items/records/?key_prefix=a%00",
        "/api/v1/schemas/item%00/",
    ],
)
def test_a_nul_in_the_url_is_400(owner, unchanged, path):
    assert_problem(raw(owner, "GET", path), 400, "nul_in_url")
    assert_problem(raw(owner, "DELETE", path), 400, "nul_in_url")


@pytest.mark.parametrize("encoded", ["%ff", "%ed%a0%80", "%c3", "%80abc", "%e2%80"])
def test_a_name_that_is_not_utf_8_is_404(owner, unchanged, encoded):
    for path in [
        f"/api/v1/collections/{encoded}/",
        f"/api/v1/collections/items/records/{encoded}/",
        f"/api/v1/schemas/{encoded}/",
    ]:
        response = raw(owner, "GET", path)
        assert_no_leak(response)
        assert response.status_code == 404, (path, response.content)
    put = raw(owner, "PUT", f"/api/v1/collections/items/records/{encoded}/", '{"data": {}}')
    assert_problem(put, 422, "invalid_key")


# --- SQL metacharacters in query parameters ---------------------------------------------------------


def listed(client, **params) -> list[str]:
    response = client.get(reverse("record-list", args=["items"]), params)
    assert response.status_code == 200, response.content
    return [record["key"] for record in response.json()["results"]]


@pytest.mark.parametrize(
    ("where", "keys"),
    [
        pytest.param({"name": QUOTED["name"]}, ["q"], id="quotes-semicolon-comment-literal"),
        pytest.param({"name": "' OR '1'='1"}, [], id="or-1-equals-1"),
        pytest.param({"name": "x' OR 1=1 --"}, [], id="comment"),
        pytest.param({"name": 'x"); DROP TABLE core_record; --'}, [], id="double-quote-drop"),
        pytest.param({"pct": "100%"}, ["q"], id="percent-literal"),
        pytest.param({"pct": "%"}, [], id="percent-is-no-wildcard"),
        pytest.param({"pct": "1__%"}, [], id="underscores-are-no-wildcards"),
        pytest.param({"under": "a_b"}, ["q"], id="underscore-literal"),
        pytest.param({"under": "a%"}, [], id="percent-prefix"),
        pytest.param({"bs": "a\\b"}, ["q"], id="backslash-literal"),
        pytest.param({"name": {"$ne": None}}, [], id="nosql-operator"),
        pytest.param({"it's": 1}, [], id="quote-in-member-name"),
        pytest.param({"n; DROP TABLE core_record": 1}, [], id="statement-in-member-name"),
        pytest.param({"n') OR ('1'='1": 1}, [], id="parenthesis-in-member-name"),
        pytest.param({"$.n": 1}, [], id="json-path-in-member-name"),
        pytest.param({"n": 1}, ["a", "a.b", "a1", "a_1", "ab1", "b"], id="plain"),
    ],
)
def test_where_binds_sql_metacharacters_as_values(owner, unchanged, where, keys):
    assert listed(owner, where=json.dumps(where)) == keys
    assert Record.objects.count() == len(ITEM_KEYS) + 1


@pytest.mark.parametrize("member", ['a"b', "a\\b", '"; DROP TABLE core_record; --'])
def test_where_member_names_sqlite_cannot_quote_are_400_there_and_bound_on_postgresql(
    owner, unchanged, member
):
    response = owner.get(reverse("record-list", args=["items"]), {"where": json.dumps({member: 1})})
    if connection.vendor == "sqlite":
        assert_problem(response, 400, "invalid_filter")
    else:
        assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize(
    ("prefix", "keys"),
    [
        pytest.param("a_", ["a_1"], id="underscore-is-literal"),
        pytest.param("_", [], id="underscore-alone"),
        pytest.param("a%", [], id="percent-is-literal"),
        pytest.param("%", [], id="percent-alone"),
        pytest.param("%a", [], id="leading-percent"),
        pytest.param("a.", ["a.b"], id="dot"),
        pytest.param("A", [], id="case-sensitive"),
        pytest.param("a\\", [], id="backslash-escape-char"),
        pytest.param("a\\_", [], id="escaped-underscore"),
        pytest.param("[a]", [], id="brackets"),
        pytest.param("a' OR '1'='1", [], id="or-1-equals-1"),
        pytest.param("'; DROP TABLE core_record; --", [], id="drop-table"),
        pytest.param("a*", [], id="glob-star"),
        pytest.param("a", ["a", "a.b", "a1", "a_1", "ab1"], id="plain"),
    ],
)
def test_key_prefix_matches_literally(owner, unchanged, prefix, keys):
    assert listed(owner, key_prefix=prefix) == keys
    assert (
        listed(owner, key_prefix=prefix, ordering="-updated_at", limit=2)
        == sorted(
            keys, key=lambda key: (Record.objects.get(collection__name="items", key=key).updated_at, key)
        )[::-1][:2]
    )


@pytest.mark.parametrize(
    "ordering",
    [
        "key; DROP TABLE core_record",
        "key--",
        "-key --",
        "key,updated_at",
        "data",
        "id",
        "collection_id",
        "KEY",
        "(SELECT 1)",
        "key' OR '1'='1",
        "?",
    ],
)
def test_an_ordering_that_is_not_one_of_four_is_400(owner, unchanged, ordering):
    response = owner.get(reverse("record-list", args=["items"]), {"ordering": ordering})
    assert_problem(response, 400, "invalid_ordering")


@pytest.mark.parametrize(
    "cursor",
    [
        "';--",
        "' OR '1'='1",
        "%27%20OR%201%3D1",
        "W10",  # base64 of [] (no position)
        encode_cursor([1]),  # not a string
        "eyJhIjogMX0",  # base64 of {"a": 1}
        "////",
        "\\x27",
    ],
)
def test_a_cursor_nucleus_did_not_issue_is_400(owner, unchanged, cursor):
    for url in [
        reverse("record-list", args=["items"]),
        reverse("collection-list"),
        reverse("schema-list"),
        reverse("record-history", args=["items", "a"]),
        reverse("schema-version-list", args=["item"]),
    ]:
        assert_problem(owner.get(url, {"cursor": cursor}), 400, "invalid_cursor")


def test_a_well_formed_cursor_holding_sql_is_only_a_position(owner, unchanged):
    # A key cursor positions the page after that string: "'" sorts before every key.
    assert listed(owner, cursor=encode_cursor(["' OR '1'='1"])) == ITEM_KEYS
    assert listed(owner, cursor=encode_cursor(["b'; DROP TABLE core_record; --"])) == ["q"]
    # An updated_at cursor carries a time: anything else in it is refused.
    cursor = encode_cursor(["2020-01-01T00:00:00+00:00' OR '1'='1", "a"])
    response = owner.get(reverse("record-list", args=["items"]), {"cursor": cursor, "ordering": "updated_at"})
    assert_problem(response, 400)
    collections = owner.get(reverse("collection-list"), {"cursor": encode_cursor(["' OR 1=1 --"])})
    assert [c["name"] for c in collections.json()["results"]] == ["feed", "items"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("updated_after", "2020-01-01T00:00:00Z' OR '1'='1"),
        ("updated_before", "2020-01-01; DROP TABLE core_record"),
        ("updated_after", "now()"),
        ("limit", "1; DROP TABLE core_record"),
        ("limit", "1 OR 1=1"),
    ],
)
def test_other_record_filters_with_sql_are_400(owner, unchanged, name, value):
    assert_problem(owner.get(reverse("record-list", args=["items"]), {name: value}), 400)


@pytest.mark.parametrize(("name", "value"), [("after", "0 OR 1=1"), ("after", "0;--"), ("wait", "1; SELECT")])
def test_event_filters_with_sql_are_400(owner, unchanged, name, value):
    assert_problem(owner.get(reverse("event-list", args=["feed"]), {name: value}), 400)


# --- numbers no double can hold ------------------------------------------------------------------------

HUGE = ["1e309", "-1e309", "1E400", "123456789e999"]


def _writes(number: str) -> list[tuple[str, str, str]]:
    """(method, path, body) of every write that takes record or event data, with number inside."""
    data = '{"ok": 1, "x": ' + number + "}"
    event = '{"type": "t", "data": ' + data + "}"
    return [
        ("POST", "/api/v1/collections/items/records/", '{"key": "new", "data": ' + data + "}"),
        ("PUT", "/api/v1/collections/items/records/a/", '{"data": ' + data + "}"),
        ("PUT", "/api/v1/collections/items/records/new/", '{"data": ' + data + "}"),
        ("PATCH", "/api/v1/collections/items/records/a/", '{"data": ' + data + "}"),
        ("PATCH", "/api/v1/collections/items/records/a/", '{"data": {"deep": [1, {"x": ' + number + "}]}}"),
        (
            "POST",
            "/api/v1/collections/items/records/bulk/",
            '{"mode": "upsert", "records": [{"key": "b", "data": {}}, {"key": "c", "data": ' + data + "}]}",
        ),
        ("POST", "/api/v1/collections/feed/events/", '{"events": [' + event + "]}"),
        (
            "POST",
            "/api/v1/transactions/",
            '{"operations": [{"op": "put", "collection": "items", "key": "b", "data": {}}, '
            '{"op": "create", "collection": "items", "key": "t", "data": ' + data + "}]}",
        ),
        (
            "POST",
            "/api/v1/transactions/",
            '{"operations": [{"op": "append", "collection": "feed", "events": [' + event + "]}]}",
        ),
    ]


@pytest.mark.parametrize("number", HUGE)
def test_a_number_no_double_can_hold_is_refused_as_not_finite(owner, unchanged, number):
    for method, path, body in _writes(number):
        response = raw(owner, method, path, body, HTTP_IDEMPOTENCY_KEY=f"{method}{path}{number}{body}"[:255])
        problem = assert_problem(response, 422)
        messages = [error["message"] for error in problem.get("errors") or []]
        assert any("finite" in message for message in messages), (method, path, problem)


@pytest.mark.parametrize("number", HUGE)
def test_a_number_no_double_can_hold_is_refused_in_counters_and_definitions(owner, unchanged, number):
    for method, path, body in [
        ("PUT", "/api/v1/collections/feed/consumers/worker/", '{"offset": ' + number + "}"),
        ("POST", "/api/v1/collections/items/records/a/revert/", '{"version": ' + number + "}"),
        (
            "POST",
            "/api/v1/collections/feed/events/",
            '{"events": [{"type": "t", "data": {}}], "expected_last_offset": ' + number + "}",
        ),
        (
            "POST",
            "/api/v1/schemas/item/versions/",
            '{"definition": {"type": "number", "maximum": ' + number + "}}",
        ),
        ("POST", "/api/v1/schemas/item/compatibility/", '{"definition": {"maximum": ' + number + "}}"),
    ]:
        response = raw(owner, method, path, body)
        assert_no_leak(response)
        assert_problem(response, 422)
    for name in ("limit", "after"):
        assert_problem(owner.get(reverse("event-list", args=["feed"]), {name: number}), 400)


def test_the_largest_double_is_stored_and_read_back_with_its_value(owner, world):
    body = '{"key": "max", "data": {"big": 1.7976931348623157e308, "small": -2.2250738585072014e-308}}'
    assert raw(owner, "POST", "/api/v1/collections/items/records/", body).status_code == 201
    data = owner.get(reverse("record-detail", args=["items", "max"])).json()["data"]
    # PostgreSQL's jsonb keeps a number's decimal value, not its spelling: 1.79...e308 comes back as
    # the 309-digit integer 17976931348623157000...0, the same number.
    assert float(data["big"]) == 1.7976931348623157e308
    assert float(data["small"]) == -2.2250738585072014e-308


# --- every endpoint that takes a body: wrong content types and bodies that are not objects ------------

# (method, path, as whom): every operation of the OpenAPI document with a request body, but
# POST /backups/{id}/verify/, which takes none (its body is never read).
BODY_ENDPOINTS = [
    ("POST", "/api/v1/collections/", "owner"),
    ("PATCH", "/api/v1/collections/items/", "owner"),
    ("POST", "/api/v1/collections/items/grants/", "owner"),
    ("POST", "/api/v1/collections/items/records/", "owner"),
    ("PUT", "/api/v1/collections/items/records/a/", "owner"),
    ("PATCH", "/api/v1/collections/items/records/a/", "owner"),
    ("POST", "/api/v1/collections/items/records/bulk/", "owner"),
    ("POST", "/api/v1/collections/items/records/a/revert/", "owner"),
    ("POST", "/api/v1/collections/feed/events/", "owner"),
    ("PUT", "/api/v1/collections/feed/consumers/worker/", "owner"),
    ("POST", "/api/v1/transactions/", "owner"),
    ("POST", "/api/v1/schemas/", "owner"),
    ("PATCH", "/api/v1/schemas/item/", "owner"),
    ("POST", "/api/v1/schemas/item/versions/", "owner"),
    ("POST", "/api/v1/schemas/item/compatibility/", "owner"),
    ("POST", "/api/v1/backups/", "operator"),
    ("POST", f"/api/v1/backups/{BACKUP_ID}/restore/", "operator"),
]
TEMPLATES = {
    "/api/v1/collections/items/": "/api/v1/collections/{name}/",
    "/api/v1/collections/items/grants/": "/api/v1/collections/{name}/grants/",
    "/api/v1/collections/items/records/": "/api/v1/collections/{name}/records/",
    "/api/v1/collections/items/records/a/": "/api/v1/collections/{name}/records/{key}/",
    "/api/v1/collections/items/records/bulk/": "/api/v1/collections/{name}/records/bulk/",
    "/api/v1/collections/items/records/a/revert/": "/api/v1/collections/{name}/records/{key}/revert/",
    "/api/v1/collections/feed/events/": "/api/v1/collections/{name}/events/",
    "/api/v1/collections/feed/consumers/worker/": "/api/v1/collections/{name}/consumers/{consumer}/",
    "/api/v1/schemas/item/": "/api/v1/schemas/{name}/",
    "/api/v1/schemas/item/versions/": "/api/v1/schemas/{name}/versions/",
    "/api/v1/schemas/item/compatibility/": "/api/v1/schemas/{name}/compatibility/",
    f"/api/v1/backups/{BACKUP_ID}/restore/": "/api/v1/backups/{backup_id}/restore/",
}


def test_the_body_endpoints_are_every_operation_with_a_request_body():
    document = SchemaGenerator().get_schema(request=None, public=True)
    with_body = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    listed = {(method, TEMPLATES.get(path, path)) for method, path, _ in BODY_ENDPOINTS}
    assert with_body - {("POST", "/api/v1/backups/{backup_id}/verify/")} == listed


@pytest.fixture
def clients(owner, operator):
    return {"owner": owner, "operator": operator}


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=nucleus",
        "application/xml",
        "text/json",
        "application/jsonx",
        "application/merge-patch+json",
    ],
)
@pytest.mark.parametrize(("method", "path", "who"), BODY_ENDPOINTS)
def test_a_body_that_is_not_application_json_is_415(clients, unchanged, method, path, who, content_type):
    response = raw(clients[who], method, path, '{"data": {}}', content_type=content_type)
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "3", "null", "true", "[]", '[{"data": {}}]'])
@pytest.mark.parametrize(("method", "path", "who"), BODY_ENDPOINTS)
def test_a_json_body_that_is_not_an_object_is_400_or_422(clients, unchanged, method, path, who, body):
    response = raw(clients[who], method, path, body)
    assert response.status_code in (400, 422), response.content
    problem = assert_problem(response, response.status_code)
    assert problem["code"] in ("body_not_object", "validation_failed"), problem
