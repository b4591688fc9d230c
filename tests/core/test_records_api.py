"""The record endpoints: create, read, replace, patch and delete, with preconditions and access rules."""

import uuid
from datetime import datetime

import pytest

from core import services
from core.models import Record, RecordTombstone
from tests.actors import TEST_ACTOR
from tests.core.records_support import (
    assert_problem,
    bulk_url,
    db_state,
    error_paths,
    history_count,
    history_url,
    if_match,
    record_url,
    records_url,
    revert_url,
)

pytestmark = pytest.mark.django_db


def create(client, key, data, collection="items"):
    response = client.post(records_url(collection), {"key": key, "data": data}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def stored(collection, key) -> Record:
    return Record.objects.get(collection=collection, key=key)


@pytest.fixture
def strict(owner):
    """A records collection of owner that requires If-Match on updates and deletes."""
    return services.collection_create(
        actor=TEST_ACTOR, name="strict", owner=owner.service, require_if_match=True
    )


@pytest.fixture
def stream(owner):
    return services.collection_create(actor=TEST_ACTOR, name="events", owner=owner.service, kind="stream")


# --- create --------------------------------------------------------------------------------------


def test_it_creates_a_record_under_the_given_key(owner, items):
    response = owner.post(records_url(), {"key": "k1", "data": {"a": 1, "b": [True, None]}}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["collection"] == "items"
    assert body["key"] == "k1"
    assert body["data"] == {"a": 1, "b": [True, None]}
    assert body["version"] == 1
    assert body["schema_version"] is None
    assert body["created_by"] == body["updated_by"] == "service:owner"
    assert body["created_at"] == body["updated_at"]
    assert body["created_at"].endswith("Z")
    assert response["ETag"] == '"1"'
    assert response["Location"] == "http://testserver" + record_url("k1")
    record = stored(items, "k1")
    assert (record.data, record.version, record.created_by) == (
        {"a": 1, "b": [True, None]},
        1,
        "service:owner",
    )
    assert history_count(items, "k1") == 1


def test_it_generates_a_uuid_key_when_none_is_given(owner, items):
    response = owner.post(records_url(), {"data": {"a": 1}}, format="json")

    assert response.status_code == 201
    key = response.json()["key"]
    assert str(uuid.UUID(key)) == key
    assert response["Location"] == "http://testserver" + record_url(key)
    assert stored(items, key).data == {"a": 1}


def test_it_refuses_an_existing_key_with_409(owner, items):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = owner.post(records_url(), {"key": "k1", "data": {"a": 2}}, format="json")

    body = assert_problem(response, 409, "record_exists")
    assert "k1" in body["detail"]
    assert db_state(items) == before


@pytest.mark.parametrize("key", ["", "-starts-with-dash", "has space", "a" * 201, "ümlaut", "a/b", 5, ["k"]])
def test_it_rejects_an_invalid_key(owner, items, key):
    response = owner.post(records_url(), {"key": key, "data": {}}, format="json")

    body = assert_problem(response, 422, "invalid_key")
    assert error_paths(body) == ["/key"]
    assert not Record.objects.exists()


def test_it_accepts_a_key_of_200_characters_using_every_allowed_character(owner, items):
    key = ("Az09._:-" * 25)[:200]

    response = owner.post(records_url(), {"key": key, "data": {}}, format="json")

    assert response.status_code == 201
    assert owner.get(record_url(key)).json()["key"] == key


def test_the_key_bulk_is_reserved(owner, items):
    response = owner.post(records_url(), {"key": "bulk", "data": {}}, format="json")

    body = assert_problem(response, 422, "invalid_key")
    assert error_paths(body) == ["/key"]
    assert not Record.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_the_reserved_key_bulk_is_no_record_url(owner, items, method):
    response = getattr(owner, method)(record_url("bulk"), {"data": {}}, format="json")

    assert_problem(response, 405, "method_not_allowed")
    assert not Record.objects.exists()


@pytest.mark.parametrize("data", [[1, 2], "text", 3, None, True])
def test_it_rejects_data_that_is_not_an_object(owner, items, data):
    response = owner.post(records_url(), {"key": "k1", "data": data}, format="json")

    body = assert_problem(response, 422)
    assert error_paths(body) == ["/data"]
    assert not Record.objects.exists()


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('{"key": "k1", "data": {"s": "a\\u0000b"}}', "/data/s"),
        ('{"key": "k1", "data": {"a\\u0000": 1}}', "/data/a\x00"),
        ('{"key": "k1", "data": {"list": ["ok", "\\ud800"]}}', "/data/list/1"),
    ],
)
def test_it_rejects_strings_the_database_cannot_store(owner, items, raw, path):
    response = owner.generic("POST", records_url(), raw, content_type="application/json")

    body = assert_problem(response, 422, "invalid_data")
    assert error_paths(body) == [path]
    assert not Record.objects.exists()


def test_it_rejects_unknown_and_missing_fields(owner, items):
    response = owner.post(records_url(), {"key": "k1", "colour": "red"}, format="json")

    body = assert_problem(response, 422, "validation_failed")
    assert sorted(error_paths(body)) == ["/colour", "/data"]
    assert not Record.objects.exists()


def test_it_rejects_a_body_that_is_not_a_json_object(owner, items):
    response = owner.post(records_url(), [{"key": "k1", "data": {}}], format="json")

    assert_problem(response, 400, "body_not_object")
    assert not Record.objects.exists()


def test_it_rejects_malformed_json(owner, items):
    response = owner.generic("POST", records_url(), '{"data": {"a": NaN}}', content_type="application/json")

    assert_problem(response, 400)
    assert not Record.objects.exists()


def test_it_rejects_data_over_one_mebibyte(owner, items):
    response = owner.post(records_url(), {"key": "big", "data": {"s": "x" * (1024 * 1024)}}, format="json")

    body = assert_problem(response, 413, "record_too_large")
    assert error_paths(body) == ["/data"]
    assert not Record.objects.exists()


def test_a_deleted_key_created_again_continues_its_version_count(owner, items):
    create(owner, "k1", {"a": 1})
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")
    assert owner.delete(record_url("k1")).status_code == 204

    response = owner.post(records_url(), {"key": "k1", "data": {"a": 3}}, format="json")

    assert response.status_code == 201
    assert response.json()["version"] == 4
    assert response["ETag"] == '"4"'
    assert stored(items, "k1").version == 4
    assert history_count(items, "k1") == 4


# --- get -----------------------------------------------------------------------------------------


def test_it_returns_the_record_with_its_etag(owner, items):
    created = create(owner, "k1", {"a": 1})

    response = owner.get(record_url("k1"))

    assert response.status_code == 200
    assert response.json() == created
    assert response["ETag"] == '"1"'


@pytest.mark.parametrize("header", ['"2"', '"1", "2"', "*", 'W/"2"'])
def test_it_answers_304_when_if_none_match_matches(owner, items, header):
    create(owner, "k1", {"a": 1})
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")

    response = owner.get(record_url("k1"), HTTP_IF_NONE_MATCH=header)

    assert response.status_code == 304
    assert response["ETag"] == '"2"'
    assert response.content == b""


def test_it_answers_200_when_if_none_match_is_stale(owner, items):
    create(owner, "k1", {"a": 1})
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")

    response = owner.get(record_url("k1"), HTTP_IF_NONE_MATCH='"1"')

    assert response.status_code == 200
    assert response.json()["data"] == {"a": 2}
    assert response["ETag"] == '"2"'


def test_it_returns_404_for_a_missing_record(owner, items):
    assert_problem(owner.get(record_url("nope")), 404, "record_not_found")


def test_it_rejects_a_malformed_etag_header(owner, items):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    assert_problem(owner.get(record_url("k1"), HTTP_IF_NONE_MATCH="v1"), 400, "invalid_etag")
    response = owner.put(record_url("k1"), {"data": {"a": 2}}, format="json", HTTP_IF_MATCH="v1")

    assert_problem(response, 400, "invalid_etag")
    assert db_state(items) == before


# --- put -----------------------------------------------------------------------------------------


def test_put_without_if_match_creates_a_missing_record(owner, items):
    response = owner.put(record_url("k1"), {"data": {"a": 1}}, format="json")

    assert response.status_code == 201
    assert response.json()["version"] == 1
    assert response["ETag"] == '"1"'
    assert response["Location"] == "http://testserver" + record_url("k1")
    assert stored(items, "k1").data == {"a": 1}
    assert history_count(items, "k1") == 1


def test_put_without_if_match_replaces_an_existing_record(owner, writer, items):
    created = create(owner, "k1", {"a": 1, "b": 2})

    response = writer.put(record_url("k1"), {"data": {"c": 3}}, format="json")

    assert response.status_code == 200
    assert not response.has_header("Location")
    body = response.json()
    assert body["data"] == {"c": 3}
    assert body["version"] == 2
    assert response["ETag"] == '"2"'
    assert body["created_at"] == created["created_at"]
    assert body["created_by"] == "service:owner"
    assert body["updated_by"] == "service:writer"
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    record = stored(items, "k1")
    assert (record.data, record.version, record.updated_by) == ({"c": 3}, 2, "service:writer")
    assert history_count(items, "k1") == 2


@pytest.mark.parametrize("header", ['"2"', '"1", "2"', "*", "2"])
def test_put_with_a_matching_if_match_replaces(owner, items, header):
    create(owner, "k1", {"a": 1})
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")

    response = owner.put(record_url("k1"), {"data": {"a": 3}}, format="json", HTTP_IF_MATCH=header)

    assert response.status_code == 200
    assert response["ETag"] == '"3"'
    assert stored(items, "k1").data == {"a": 3}


def test_it_rejects_stale_if_match(owner, items):
    create(owner, "k1", {"a": 1})
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")
    before = db_state(items)

    response = owner.put(record_url("k1"), {"data": {"a": 3}}, format="json", **if_match(1))

    body = assert_problem(response, 412, "precondition_failed")
    assert body["current_version"] == 2
    assert db_state(items) == before
    assert stored(items, "k1").data == {"a": 2}


@pytest.mark.parametrize("header", ['"1"', "*"])
def test_put_with_if_match_on_a_missing_record_is_412(owner, items, header):
    response = owner.put(record_url("k1"), {"data": {"a": 1}}, format="json", HTTP_IF_MATCH=header)

    assert_problem(response, 412, "precondition_failed")
    assert not Record.objects.exists()
    assert history_count(items, "k1") == 0


def test_put_with_if_none_match_star_refuses_an_existing_record(owner, items):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = owner.put(record_url("k1"), {"data": {"a": 2}}, format="json", HTTP_IF_NONE_MATCH="*")

    assert_problem(response, 412, "precondition_failed")
    assert db_state(items) == before


def test_put_with_if_none_match_star_creates_a_missing_record(owner, items):
    response = owner.put(record_url("k1"), {"data": {"a": 1}}, format="json", HTTP_IF_NONE_MATCH="*")

    assert response.status_code == 201
    assert stored(items, "k1").version == 1


def test_put_accepts_only_if_none_match_star(owner, items):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = owner.put(record_url("k1"), {"data": {"a": 2}}, format="json", HTTP_IF_NONE_MATCH='"1"')

    assert_problem(response, 400, "invalid_etag")
    assert db_state(items) == before


def test_put_rejects_fields_other_than_data(owner, items):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = owner.put(record_url("k1"), {"key": "k1", "data": {"a": 2}}, format="json")

    body = assert_problem(response, 422)
    assert error_paths(body) == ["/key"]
    assert db_state(items) == before


def test_put_rejects_an_invalid_key(owner, items):
    response = owner.put(record_url("bad key!"), {"data": {"a": 1}}, format="json")

    assert_problem(response, 422, "invalid_key")
    assert not Record.objects.exists()


# --- patch ---------------------------------------------------------------------------------------


def test_patch_applies_a_json_merge_patch(owner, items):
    create(owner, "k1", {"a": 1, "b": {"c": 1, "d": 2}, "e": [1, 2], "keep": "me"})

    response = owner.patch(
        record_url("k1"),
        {"data": {"a": None, "b": {"c": None, "x": {"y": 1}}, "e": [3], "f": "new", "absent": None}},
        format="json",
    )

    assert response.status_code == 200
    expected = {"b": {"d": 2, "x": {"y": 1}}, "e": [3], "f": "new", "keep": "me"}
    assert response.json()["data"] == expected
    assert response.json()["version"] == 2
    assert response["ETag"] == '"2"'
    record = stored(items, "k1")
    assert (record.data, record.version) == (expected, 2)
    assert history_count(items, "k1") == 2


def test_patch_replaces_a_scalar_member_with_an_object(owner, items):
    create(owner, "k1", {"a": 1})

    response = owner.patch(record_url("k1"), {"data": {"a": {"b": None, "c": 2}}}, format="json")

    assert response.status_code == 200
    assert stored(items, "k1").data == {"a": {"c": 2}}


def test_an_empty_patch_still_writes_a_version(owner, items):
    create(owner, "k1", {"a": 1})

    response = owner.patch(record_url("k1"), {"data": {}}, format="json")

    assert response.status_code == 200
    assert stored(items, "k1").version == 2
    assert stored(items, "k1").data == {"a": 1}


def test_patch_of_a_missing_record_is_404(owner, items):
    response = owner.patch(record_url("nope"), {"data": {"a": 1}}, format="json")

    assert_problem(response, 404, "record_not_found")
    assert not Record.objects.exists()
    assert history_count(items, "nope") == 0


def test_patch_rejects_stale_if_match(owner, items):
    create(owner, "k1", {"a": 1})
    owner.patch(record_url("k1"), {"data": {"a": 2}}, format="json")
    before = db_state(items)

    response = owner.patch(record_url("k1"), {"data": {"a": 3}}, format="json", **if_match(1))

    assert_problem(response, 412, "precondition_failed")
    assert db_state(items) == before


def test_patch_with_matching_if_match_applies(owner, items):
    create(owner, "k1", {"a": 1})

    response = owner.patch(record_url("k1"), {"data": {"b": 2}}, format="json", **if_match(1))

    assert response.status_code == 200
    assert stored(items, "k1").data == {"a": 1, "b": 2}


def test_patch_with_if_match_on_a_missing_record_is_412(owner, items):
    response = owner.patch(record_url("nope"), {"data": {"a": 1}}, format="json", **if_match(1))

    assert_problem(response, 412, "precondition_failed")
    assert not Record.objects.exists()


@pytest.mark.parametrize("patch", [[1], "x", 1, None])
def test_patch_must_be_an_object(owner, items, patch):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = owner.patch(record_url("k1"), {"data": patch}, format="json")

    body = assert_problem(response, 422)
    assert error_paths(body) == ["/data"]
    assert db_state(items) == before


def test_patch_that_makes_data_invalid_is_refused(owner, items):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = owner.generic(
        "PATCH", record_url("k1"), '{"data": {"b": {"c": "\\u0000"}}}', content_type="application/json"
    )

    body = assert_problem(response, 422, "invalid_data")
    assert error_paths(body) == ["/data/b/c"]
    assert db_state(items) == before


# --- delete --------------------------------------------------------------------------------------


def test_delete_removes_the_record(owner, items):
    create(owner, "k1", {"a": 1})

    response = owner.delete(record_url("k1"))

    assert response.status_code == 204
    assert response.content == b""
    assert not Record.objects.filter(key="k1").exists()
    assert RecordTombstone.objects.get(collection=items, key="k1").version == 2
    assert history_count(items, "k1") == 2
    assert_problem(owner.get(record_url("k1")), 404, "record_not_found")


def test_delete_of_a_missing_record_is_404(owner, items):
    before = db_state(items)

    assert_problem(owner.delete(record_url("nope")), 404, "record_not_found")
    assert db_state(items) == before


def test_delete_rejects_stale_if_match(owner, items):
    create(owner, "k1", {"a": 1})
    owner.put(record_url("k1"), {"data": {"a": 2}}, format="json")
    before = db_state(items)

    assert_problem(owner.delete(record_url("k1"), **if_match(1)), 412, "precondition_failed")
    assert db_state(items) == before


def test_delete_with_matching_if_match_deletes(owner, items):
    create(owner, "k1", {"a": 1})

    assert owner.delete(record_url("k1"), **if_match(1)).status_code == 204
    assert not Record.objects.exists()


def test_delete_with_if_match_on_a_missing_record_is_412(owner, items):
    before = db_state(items)

    assert_problem(owner.delete(record_url("nope"), **if_match(1)), 412, "precondition_failed")
    assert db_state(items) == before


# --- require_if_match ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [("put", {"data": {"a": 2}}), ("patch", {"data": {"a": 2}}), ("delete", None)],
)
def test_it_requires_if_match_on_writes_of_existing_records(owner, strict, method, body):
    create(owner, "k1", {"a": 1}, collection="strict")
    before = db_state(strict)

    response = getattr(owner, method)(record_url("k1", "strict"), body, format="json")

    assert_problem(response, 428, "if_match_required")
    assert db_state(strict) == before


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [("put", {"data": {"a": 2}}, 200), ("patch", {"data": {"a": 2}}, 200), ("delete", None, 204)],
)
def test_a_collection_requiring_if_match_accepts_writes_with_it(owner, strict, method, body, status):
    create(owner, "k1", {"a": 1}, collection="strict")

    response = getattr(owner, method)(record_url("k1", "strict"), body, format="json", **if_match(1))

    assert response.status_code == status
    assert history_count(strict, "k1") == 2


def test_a_collection_requiring_if_match_still_creates_without_it(owner, strict):
    assert owner.post(records_url("strict"), {"key": "k1", "data": {}}, format="json").status_code == 201
    assert owner.put(record_url("k2", "strict"), {"data": {}}, format="json").status_code == 201
    assert Record.objects.filter(collection=strict).count() == 2


# --- access --------------------------------------------------------------------------------------


def test_reader_can_read(owner, reader, items):
    create(owner, "k1", {"a": 1})

    assert reader.get(records_url()).status_code == 200
    assert reader.get(record_url("k1")).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", records_url, {"key": "k2", "data": {}}),
        ("put", lambda: record_url("k1"), {"data": {}}),
        ("put", lambda: record_url("k2"), {"data": {}}),
        ("patch", lambda: record_url("k1"), {"data": {"b": 1}}),
        ("delete", lambda: record_url("k1"), None),
    ],
)
def test_reader_gets_403_on_writes(owner, reader, items, method, url, body):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = getattr(reader, method)(url(), body, format="json")

    assert_problem(response, 403, "forbidden")
    assert db_state(items) == before


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", records_url, None),
        ("post", records_url, {"key": "k2", "data": {}}),
        ("get", lambda: record_url("k1"), None),
        ("get", lambda: record_url("missing"), None),
        ("put", lambda: record_url("k1"), {"data": {}}),
        ("patch", lambda: record_url("k1"), {"data": {"b": 1}}),
        ("delete", lambda: record_url("k1"), None),
        ("post", bulk_url, {"mode": "insert", "records": [{"key": "k3", "data": {}}]}),
        ("get", lambda: history_url("k1"), None),
        ("post", lambda: revert_url("k1"), {"version": 1}),
    ],
)
def test_outsider_gets_404_on_everything(owner, outsider, items, method, url, body):
    create(owner, "k1", {"a": 1})
    before = db_state(items)

    response = getattr(outsider, method)(url(), body, format="json")

    body = assert_problem(response, 404, "collection_not_found")
    assert "items" in body["detail"]
    assert db_state(items) == before


def test_outsider_gets_the_same_404_as_for_a_collection_that_does_not_exist(outsider, items):
    hidden = outsider.get(record_url("k1")).json()
    missing = outsider.get(record_url("k1", "no-such-collection")).json()

    assert {**hidden, "detail": ""} == {**missing, "detail": ""}


def test_a_caller_without_credentials_gets_401(client, items):
    before = db_state(items)

    assert_problem(client.get(records_url()), 401)
    assert_problem(client.post(records_url(), {"data": {}}, content_type="application/json"), 401)
    assert db_state(items) == before


def test_writer_can_write(writer, items):
    assert writer.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json").status_code == 201
    assert writer.put(record_url("k1"), {"data": {"a": 2}}, format="json").status_code == 200
    assert writer.patch(record_url("k1"), {"data": {"b": 3}}, format="json").status_code == 200
    record = stored(items, "k1")
    assert (record.data, record.version) == ({"a": 2, "b": 3}, 3)
    assert record.created_by == record.updated_by == "service:writer"
    assert writer.delete(record_url("k1"), **if_match(3)).status_code == 204
    assert not Record.objects.exists()


def test_operator_with_a_session_can_do_everything(operator, items):
    response = operator.post(records_url(), {"key": "k1", "data": {"a": 1}}, format="json")
    assert response.status_code == 201
    assert response.json()["created_by"] == "operator:alice"
    assert operator.get(records_url()).json()["results"][0]["key"] == "k1"
    assert operator.get(record_url("k1")).status_code == 200
    assert operator.put(record_url("k1"), {"data": {"a": 2}}, format="json", **if_match(1)).status_code == 200
    assert operator.patch(record_url("k1"), {"data": {"b": 3}}, format="json").status_code == 200
    assert operator.get(history_url("k1")).json()["results"][0]["changed_by"] == "operator:alice"
    assert operator.post(revert_url("k1"), {"version": 1}, format="json").status_code == 200
    bulk = operator.post(
        bulk_url(), {"mode": "upsert", "records": [{"key": "k2", "data": {}}]}, format="json"
    )
    assert bulk.status_code == 201
    assert operator.delete(record_url("k1")).status_code == 204
    assert list(Record.objects.values_list("key", "updated_by")) == [("k2", "operator:alice")]
    assert history_count(items, "k1") == 5


# --- streams and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", lambda: records_url("events"), None),
        ("post", lambda: records_url("events"), {"key": "k1", "data": {}}),
        ("get", lambda: record_url("k1", "events"), None),
        ("put", lambda: record_url("k1", "events"), {"data": {}}),
        ("patch", lambda: record_url("k1", "events"), {"data": {}}),
        ("delete", lambda: record_url("k1", "events"), None),
        ("post", lambda: bulk_url("events"), {"mode": "upsert", "records": [{"key": "k1", "data": {}}]}),
        ("get", lambda: history_url("k1", "events"), None),
        ("post", lambda: revert_url("k1", "events"), {"version": 1}),
    ],
)
def test_record_endpoints_of_a_stream_are_404(owner, stream, method, url, body):
    response = getattr(owner, method)(url(), body, format="json")

    assert_problem(response, 404, "not_a_records_collection")
    assert not Record.objects.exists()


@pytest.mark.parametrize("slash", [True, False])
def test_paths_work_with_and_without_a_trailing_slash(owner, items, slash):
    def url(path: str) -> str:
        return path if slash else path.rstrip("/")

    assert url(record_url("k1")).endswith("/") is slash
    responses = [
        owner.post(url(records_url()), {"key": "k1", "data": {"a": 1}}, format="json"),
        owner.get(url(records_url())),
        owner.get(url(record_url("k1"))),
        owner.put(url(record_url("k1")), {"data": {"a": 2}}, format="json"),
        owner.patch(url(record_url("k1")), {"data": {"b": 3}}, format="json"),
        owner.post(
            url(bulk_url()), {"mode": "insert", "records": [{"key": "k2", "data": {}}]}, format="json"
        ),
        owner.get(url(history_url("k1"))),
        owner.post(url(revert_url("k1")), {"version": 1}, format="json"),
        owner.delete(url(record_url("k1"))),
    ]

    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 201, 200, 200, 204]
    assert list(Record.objects.values_list("key", flat=True)) == ["k2"]
    assert history_count(items, "k1") == 5
