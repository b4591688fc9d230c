"""Writes to a collection bound to a schema: validated against its latest version, which is stored."""

import json

import pytest
from django.utils import timezone

from core import services as core_services
from core.models import Record, RecordTombstone
from schemas.models import SchemaVersion
from schemas.validation import compiled_validator
from tests.actors import TEST_ACTOR
from tests.core.records_support import (
    assert_problem,
    bulk_url,
    db_state,
    error_paths,
    history_count,
    if_match,
    record_url,
    records_url,
    revert_url,
)
from tests.schemas.schema_support import (
    DRAFT_07,
    INTEGER,
    NUMBER,
    STRING,
    fingerprint,
    make_collection,
    make_schema,
    obj,
    stored,
    versions_url,
)

pytestmark = pytest.mark.django_db

AGE = {"type": "integer", "minimum": 0}
PERSON = obj({"name": STRING, "age": AGE}, ["name"])


@pytest.fixture
def people(owner, writer):
    """A collection `people` of owner, bound to schema `person` (version 1 = PERSON), writable by writer."""
    schema = make_schema(owner.service, "person", PERSON)
    collection = make_collection(owner.service, "people", schema)
    core_services.grant_set(collection=collection, service_name="writer", access="write", actor=TEST_ACTOR)
    return collection


def create(client, data, key="ann", collection="people"):
    return client.post(records_url(collection), {"key": key, "data": data}, format="json")


def bulk(client, mode, records, collection="people"):
    return client.post(bulk_url(collection), {"mode": mode, "records": records}, format="json")


# --- create --------------------------------------------------------------------------------------


def test_a_valid_create_stores_the_latest_schema_version(owner, people):
    response = create(owner, {"name": "Ann", "age": 3})

    assert response.status_code == 201, response.content
    assert response.json()["schema_version"] == 1
    assert stored(people) == {"ann": (1, {"name": "Ann", "age": 3}, 1)}
    assert owner.get(record_url("ann", "people")).json()["schema_version"] == 1


def test_an_invalid_create_is_a_422_pointing_into_data_and_writes_nothing(owner, people):
    before = db_state(people)

    response = create(owner, {"name": 5, "age": -1})

    body = assert_problem(response, 422, "schema_validation_failed")
    assert sorted(error_paths(body)) == ["/data/age", "/data/name"]
    assert all(error["message"] for error in body["errors"])
    assert body["schema_version"] == 1
    assert db_state(people) == before
    assert not Record.objects.filter(collection=people).exists()


def test_a_missing_required_property_points_at_data(owner, people):
    response = create(owner, {"age": 1})

    body = assert_problem(response, 422, "schema_validation_failed")
    assert body["errors"] == [{"path": "/data", "message": body["errors"][0]["message"]}]
    assert "name" in body["errors"][0]["message"]
    assert not Record.objects.filter(collection=people).exists()


def test_errors_point_into_nested_data_with_escaped_pointers(owner):
    schema = make_schema(owner.service, "nested", obj({"a/b": obj({"c~d": INTEGER})}))
    make_collection(owner.service, "things", schema)

    response = create(owner, {"a/b": {"c~d": "x"}}, collection="things")

    body = assert_problem(response, 422, "schema_validation_failed")
    assert error_paths(body) == ["/data/a~1b/c~0d"]


def test_writes_of_a_granted_writer_are_validated_too(writer, people):
    refused = create(writer, {"name": None})
    accepted = create(writer, {"name": "Wes"}, key="wes")

    assert_problem(refused, 422, "schema_validation_failed")
    assert (accepted.status_code, accepted.json()["schema_version"]) == (201, 1)
    assert set(stored(people)) == {"wes"}


def test_writes_to_an_unbound_collection_store_no_schema_version(owner, items):
    response = owner.post(records_url("items"), {"key": "k", "data": {"anything": True}}, format="json")

    assert (response.status_code, response.json()["schema_version"]) == (201, None)
    assert Record.objects.get(key="k").schema_version is None


# --- put -----------------------------------------------------------------------------------------


def test_put_replacing_with_invalid_data_is_a_422_and_changes_nothing(owner, people):
    create(owner, {"name": "Ann"})
    before = db_state(people)

    response = owner.put(record_url("ann", "people"), {"data": {"name": "Ann", "age": "old"}}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_validation_failed")) == ["/data/age"]
    assert db_state(people) == before


def test_put_creating_with_invalid_data_is_a_422_and_creates_nothing(owner, people):
    response = owner.put(record_url("bob", "people"), {"data": {"age": 1}}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_validation_failed")) == ["/data"]
    assert not Record.objects.filter(collection=people).exists()


def test_a_valid_put_stores_the_schema_version(owner, people):
    create(owner, {"name": "Ann"})

    replaced = owner.put(record_url("ann", "people"), {"data": {"name": "Ann", "age": 4}}, format="json")
    created = owner.put(record_url("bob", "people"), {"data": {"name": "Bob"}}, format="json")

    assert (replaced.status_code, replaced.json()["schema_version"]) == (200, 1)
    assert (created.status_code, created.json()["schema_version"]) == (201, 1)
    assert stored(people) == {"ann": (2, {"name": "Ann", "age": 4}, 1), "bob": (1, {"name": "Bob"}, 1)}


def test_a_put_with_a_matching_if_match_is_still_validated(owner, people):
    create(owner, {"name": "Ann"})
    before = db_state(people)

    response = owner.put(record_url("ann", "people"), {"data": {"name": 1}}, format="json", **if_match(1))

    assert_problem(response, 422, "schema_validation_failed")
    assert db_state(people) == before


# --- patch ---------------------------------------------------------------------------------------


def test_patch_validates_the_merged_document_not_the_patch(owner, people):
    create(owner, {"name": "Ann", "age": 1})

    response = owner.patch(record_url("ann", "people"), {"data": {"age": 2}}, format="json")

    assert response.status_code == 200, response.content  # the patch alone lacks the required name
    assert (response.json()["data"], response.json()["schema_version"]) == ({"name": "Ann", "age": 2}, 1)
    assert stored(people) == {"ann": (2, {"name": "Ann", "age": 2}, 1)}


def test_a_patch_whose_merged_document_is_invalid_is_a_422_and_changes_nothing(owner, people):
    create(owner, {"name": "Ann", "age": 1})
    before = db_state(people)

    removed = owner.patch(record_url("ann", "people"), {"data": {"name": None}}, format="json")
    retyped = owner.patch(record_url("ann", "people"), {"data": {"age": "one"}}, format="json")

    body = assert_problem(removed, 422, "schema_validation_failed")
    assert error_paths(body) == ["/data"]
    assert "name" in body["errors"][0]["message"]
    assert error_paths(assert_problem(retyped, 422, "schema_validation_failed")) == ["/data/age"]
    assert db_state(people) == before


# --- bulk ----------------------------------------------------------------------------------------


def test_bulk_names_the_index_of_the_first_invalid_record_and_writes_nothing(owner, people):
    create(owner, {"name": "Ann"}, key="a")
    before = db_state(people)
    records = [
        {"key": "a", "data": {"name": "Ann", "age": 9}},
        {"key": "b", "data": {"name": "Bob"}},
        {"key": "c", "data": {"name": "Cy", "age": -3}},
        {"key": "d", "data": {"name": "Di"}},
        {"key": "e", "data": {"age": 1}},
    ]

    response = bulk(owner, "upsert", records)

    body = assert_problem(response, 422, "schema_validation_failed")
    assert body["index"] == 2
    assert error_paths(body) == ["/records/2/data/age", "/records/4/data"]
    assert body["schema_version"] == 1
    assert db_state(people) == before
    assert stored(people) == {"a": (1, {"name": "Ann"}, 1)}


def test_bulk_insert_of_valid_records_stores_the_schema_version_for_each(owner, people):
    response = bulk(
        owner, "insert", [{"key": f"k{i}", "data": {"name": f"n{i}", "age": i}} for i in range(5)]
    )

    assert response.status_code == 201, response.content
    assert {key: value[2] for key, value in stored(people).items()} == {f"k{i}": 1 for i in range(5)}


def test_bulk_with_generated_keys_names_the_index_too(owner, people):
    response = bulk(owner, "insert", [{"data": {"name": "ok"}}, {"data": {"name": 1}}])

    body = assert_problem(response, 422, "schema_validation_failed")
    assert (body["index"], error_paths(body)) == (1, ["/records/1/data/name"])
    assert not Record.objects.filter(collection=people).exists()


# --- revert --------------------------------------------------------------------------------------


@pytest.fixture
def reverted_setup(owner, writer):
    """`people` with ann: v1 {"name": "Ann", "age": "ten"} (before binding), v2 {"name": "Ann", "age": 10}."""
    collection = make_collection(owner.service, "people", None)
    core_services.record_create(
        collection=collection, key="ann", data={"name": "Ann", "age": "ten"}, actor=TEST_ACTOR
    )
    core_services.record_put(
        collection=collection, key="ann", data={"name": "Ann", "age": 10}, actor=TEST_ACTOR
    )
    schema = make_schema(owner.service, "person", PERSON)
    core_services.collection_update(collection=collection, schema=schema, actor=TEST_ACTOR)
    return collection


def test_reverting_to_data_the_current_schema_rejects_is_a_422_and_writes_nothing(owner, reverted_setup):
    before = db_state(reverted_setup), history_count(reverted_setup, "ann")

    response = owner.post(revert_url("ann", "people"), {"version": 1}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_validation_failed")) == ["/data/age"]
    assert (db_state(reverted_setup), history_count(reverted_setup, "ann")) == before
    assert stored(reverted_setup) == {"ann": (2, {"name": "Ann", "age": 10}, None)}


def test_reverting_to_data_the_schema_accepts_stores_the_schema_version(owner, reverted_setup):
    owner.put(record_url("ann", "people"), {"data": {"name": "Ann", "age": 11}}, format="json")

    response = owner.post(revert_url("ann", "people"), {"version": 2}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["data"], response.json()["version"]) == ({"name": "Ann", "age": 10}, 4)
    assert response.json()["schema_version"] == 1
    assert stored(reverted_setup) == {"ann": (4, {"name": "Ann", "age": 10}, 1)}


def test_recreating_a_deleted_record_with_data_the_schema_rejects_is_a_422(owner, reverted_setup):
    owner.delete(record_url("ann", "people"))
    before = db_state(reverted_setup), history_count(reverted_setup, "ann")

    response = owner.post(revert_url("ann", "people"), {"version": 1}, format="json")

    assert_problem(response, 422, "schema_validation_failed")
    assert (db_state(reverted_setup), history_count(reverted_setup, "ann")) == before
    assert not Record.objects.filter(collection=reverted_setup).exists()
    assert RecordTombstone.objects.filter(collection=reverted_setup, key="ann").exists()


# --- later versions ------------------------------------------------------------------------------


def test_a_version_registered_later_applies_to_later_writes(owner, people):
    create(owner, {"name": "Ann", "age": 3})
    refused_before = create(owner, {"name": "Bob", "age": "ten"}, key="bob")
    widened = obj({"name": STRING, "age": {"type": ["integer", "string"], "minimum": 0}}, ["name"])

    registered = owner.post(versions_url("person"), {"definition": widened}, format="json")
    accepted_after = create(owner, {"name": "Bob", "age": "ten"}, key="bob")

    assert_problem(refused_before, 422, "schema_validation_failed")
    assert (registered.status_code, registered.json()["version"]) == (201, 2)
    assert (accepted_after.status_code, accepted_after.json()["schema_version"]) == (201, 2)
    assert stored(people) == {
        "ann": (1, {"name": "Ann", "age": 3}, 1),  # written under version 1, not rewritten
        "bob": (1, {"name": "Bob", "age": "ten"}, 2),
    }


def test_a_narrower_later_version_refuses_what_the_earlier_one_accepted(owner):
    schema = make_schema(owner.service, "measure", obj({"n": NUMBER}), compatibility="FORWARD")
    collection = make_collection(owner.service, "measures", schema)
    create(owner, {"n": 1}, key="a", collection="measures")

    registered = owner.post(versions_url("measure"), {"definition": obj({"n": INTEGER})}, format="json")
    refused = create(owner, {"n": 1.5}, key="b", collection="measures")
    rewritten = owner.put(record_url("a", "measures"), {"data": {"n": 2}}, format="json")

    assert registered.status_code == 201, registered.content
    body = assert_problem(refused, 422, "schema_validation_failed")
    assert (error_paths(body), body["schema_version"]) == (["/data/n"], 2)
    assert (rewritten.status_code, rewritten.json()["schema_version"]) == (200, 2)
    assert stored(collection) == {"a": (2, {"n": 2}, 2)}


# --- draft-07 ------------------------------------------------------------------------------------


def test_a_draft_07_schema_validates_tuple_items(owner):
    point = {
        "$schema": DRAFT_07,
        "type": "object",
        "properties": {
            "at": {"type": "array", "items": [NUMBER, NUMBER, STRING], "additionalItems": False},
        },
        "required": ["at"],
    }
    schema = make_schema(owner.service, "point", point)
    collection = make_collection(owner.service, "points", schema)

    valid = create(owner, {"at": [1, 2.5, "m"]}, key="p1", collection="points")
    wrong_item = create(owner, {"at": [1, "2", "m"]}, key="p2", collection="points")
    wrong_last = create(owner, {"at": [1, 2, 3]}, key="p3", collection="points")
    too_long = create(owner, {"at": [1, 2, "m", 4]}, key="p4", collection="points")

    assert (valid.status_code, valid.json()["schema_version"]) == (201, 1)
    assert error_paths(assert_problem(wrong_item, 422, "schema_validation_failed")) == ["/data/at/1"]
    assert error_paths(assert_problem(wrong_last, 422, "schema_validation_failed")) == ["/data/at/2"]
    assert error_paths(assert_problem(too_long, 422, "schema_validation_failed")) == ["/data/at"]
    assert set(stored(collection)) == {"p1"}


# --- patterns ------------------------------------------------------------------------------------


def test_a_unicode_property_pattern_is_enforced_on_writes(owner):
    schema = make_schema(
        owner.service, "names", obj({"name": {"type": "string", "pattern": "^\\p{Letter}+$"}})
    )
    collection = make_collection(owner.service, "words", schema)

    accepted = create(owner, {"name": "Ωmega"}, key="greek", collection="words")
    before = db_state(collection)
    refused = create(owner, {"name": "a1"}, key="digit", collection="words")

    assert (accepted.status_code, accepted.json()["schema_version"]) == (201, 1), accepted.content
    body = assert_problem(refused, 422, "schema_validation_failed")
    assert error_paths(body) == ["/data/name"]
    assert db_state(collection) == before
    assert set(stored(collection)) == {"greek"}


def test_a_stored_version_whose_pattern_the_engine_cannot_run_refuses_writes_with_a_409(owner):
    """Versions registered before patterns had to suit the linear-time engine may hold a lookahead."""
    schema = make_schema(owner.service, "legacy", obj({"code": STRING}))
    collection = make_collection(owner.service, "codes", schema)
    definition = obj({"code": {"type": "string", "pattern": "^(?=.*[0-9])"}})
    # stored as the registry of earlier releases stored it: registration now refuses it
    SchemaVersion.objects.create(
        schema=schema,
        version=2,
        definition=definition,
        fingerprint=fingerprint(definition),
        created_at=timezone.now(),
        created_by="command:old-release",
    )
    before = db_state(collection)

    response = create(owner, {"code": "a1"}, key="k", collection="codes")

    body = assert_problem(response, 409, "schema_unsupported")
    assert "Register a new version" in body["detail"]
    assert db_state(collection) == before


# --- compiled validators -------------------------------------------------------------------------


def test_compiled_validators_are_reused_per_fingerprint():
    definition = obj({"reuse": {"type": "string", "maxLength": 3}}, ["reuse"], title="reuse-test")
    print_ = fingerprint(definition)

    first = compiled_validator(print_, definition)
    again = compiled_validator(print_, definition)
    lazily = compiled_validator(print_, lambda: pytest.fail("a cached validator was compiled again"))

    assert first is again is lazily
    assert first.is_valid({"reuse": "abc"})
    assert not first.is_valid({"reuse": "abcd"})
    assert (
        compiled_validator(fingerprint({**definition, "title": "other"}), {**definition, "title": "other"})
        is not first
    )


def test_writes_use_the_validator_compiled_for_the_version(owner, people):
    version = SchemaVersion.objects.get(schema__name="person", version=1)
    assert version.fingerprint == fingerprint(PERSON) == fingerprint(json.loads(json.dumps(PERSON)))

    create(owner, {"name": "Ann"})
    cached = compiled_validator(version.fingerprint, lambda: pytest.fail("the write did not cache it"))
    create(owner, {"name": "Bob"}, key="bob")

    assert cached is compiled_validator(version.fingerprint, lambda: pytest.fail("recompiled"))
    assert not cached.is_valid({"age": 1})
