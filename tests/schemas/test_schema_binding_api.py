"""Binding a schema to a collection (POST/PATCH /collections/ with "schema"): stored records are checked."""

import pytest
from reversion.models import Revision

from core import services as core_services
from core.models import Collection, Record
from schemas import services as schema_services
from schemas.models import Schema
from tests.actors import TEST_ACTOR
from tests.core.records_support import assert_problem, error_paths, records_url
from tests.schemas.schema_support import (
    INTEGER,
    NUMBER,
    STRING,
    HeldTransaction,
    Request,
    collection_url,
    collections_url,
    make_collection,
    make_schema,
    obj,
    stored,
    versions_url,
    wait_until_blocked,
)

PERSON = obj({"name": STRING, "age": INTEGER}, ["name"])


def collection_row(name: str) -> tuple:
    return Collection.objects.values_list("schema__name", "description", "updated_at").get(name=name)


# --- binding on create ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_collection_is_created_bound_to_a_schema(owner):
    make_schema(owner.service, "person", PERSON)

    response = owner.post(collections_url(), {"name": "people", "schema": "person"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["schema"] == "person"
    assert Collection.objects.get(name="people").schema == Schema.objects.get(name="person")
    assert owner.get(collection_url("people")).json()["schema"] == "person"


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"schema": None}])
def test_a_collection_created_without_a_schema_shows_null(owner, body):
    response = owner.post(collections_url(), {"name": "people", **body}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["schema"] is None
    assert Collection.objects.get(name="people").schema is None


@pytest.mark.django_db
def test_an_operator_creates_a_bound_collection_for_an_owner(operator, owner):
    make_schema(owner.service, "person", PERSON)

    response = operator.post(
        collections_url(), {"name": "people", "owner": "owner", "schema": "person"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert (response.json()["owner"], response.json()["schema"]) == ("owner", "person")


@pytest.mark.django_db
def test_creating_with_an_unknown_schema_is_a_422_and_creates_nothing(owner):
    response = owner.post(collections_url(), {"name": "people", "schema": "nobody"}, format="json")

    assert error_paths(assert_problem(response, 422, "unknown_schema")) == ["/schema"]
    assert not Collection.objects.filter(name="people").exists()


@pytest.mark.django_db
def test_creating_with_a_schema_without_versions_is_a_422_and_creates_nothing(owner):
    make_schema(owner.service, "person")

    response = owner.post(collections_url(), {"name": "people", "schema": "person"}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_has_no_versions")) == ["/schema"]
    assert not Collection.objects.filter(name="people").exists()


@pytest.mark.django_db
def test_a_stream_cannot_be_created_bound_to_a_schema(owner):
    make_schema(owner.service, "person", PERSON)

    response = owner.post(
        collections_url(), {"name": "events", "kind": "stream", "schema": "person"}, format="json"
    )

    assert error_paths(assert_problem(response, 422, "schema_on_stream")) == ["/schema"]
    assert not Collection.objects.filter(name="events").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("schema", [5, {"name": "person"}, ["person"]])
def test_a_schema_that_is_not_a_name_is_a_422(owner, schema):
    response = owner.post(collections_url(), {"name": "people", "schema": schema}, format="json")

    assert error_paths(assert_problem(response, 422)) == ["/schema"]
    assert not Collection.objects.filter(name="people").exists()


# --- binding on patch ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_patch_binds_a_schema_that_every_stored_record_satisfies(owner, items):
    make_schema(owner.service, "person", PERSON)
    for key, data in {"a": {"name": "Ann", "age": 3}, "b": {"name": "Bob"}}.items():
        core_services.record_create(collection=items, key=key, data=data, actor=TEST_ACTOR)
    records = stored(items)

    response = owner.patch(collection_url("items"), {"schema": "person"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["schema"] == "person"
    assert collection_row("items")[0] == "person"
    assert stored(items) == records  # binding checks records; it does not rewrite them


@pytest.mark.django_db
def test_patch_refuses_a_schema_that_stored_records_fail_with_count_and_sample_keys(owner, items):
    make_schema(owner.service, "person", PERSON)
    invalid = {f"bad{i:02d}": {"name": i} for i in range(12)}
    for key, data in {**invalid, "good": {"name": "Ann"}, "zz-no-name": {"age": 1}}.items():
        core_services.record_create(collection=items, key=key, data=data, actor=TEST_ACTOR)
    before = collection_row("items"), stored(items), Revision.objects.count()

    response = owner.patch(
        collection_url("items"), {"schema": "person", "description": "also this"}, format="json"
    )

    body = assert_problem(response, 409, "invalid_records")
    assert body["count"] == 13
    assert body["sample_keys"] == sorted(invalid)[:10]
    assert "nothing was changed" in body["detail"]
    assert (collection_row("items"), stored(items), Revision.objects.count()) == before
    assert collection_row("items")[0] is None  # still unbound, and the description unchanged


@pytest.mark.django_db
def test_binding_checks_the_latest_version_of_the_schema(owner, items):
    make_schema(owner.service, "person", obj({"n": NUMBER}), obj({"n": INTEGER}), compatibility="NONE")
    core_services.record_create(collection=items, key="a", data={"n": 1.5}, actor=TEST_ACTOR)

    response = owner.patch(collection_url("items"), {"schema": "person"}, format="json")

    body = assert_problem(response, 409, "invalid_records")
    assert (body["count"], body["sample_keys"]) == (1, ["a"])
    assert "version 2" in body["detail"]
    assert collection_row("items")[0] is None


@pytest.mark.django_db
def test_rebinding_to_another_schema_checks_the_records_and_keeps_the_old_binding_on_refusal(owner):
    lenient = make_schema(owner.service, "lenient", obj({"n": NUMBER}))
    make_schema(owner.service, "strict", obj({"n": INTEGER}))
    make_collection(owner.service, "items", lenient, {"a": {"n": 1}, "b": {"n": 1.5}})

    response = owner.patch(collection_url("items"), {"schema": "strict"}, format="json")

    body = assert_problem(response, 409, "invalid_records")
    assert (body["count"], body["sample_keys"]) == (1, ["b"])
    assert collection_row("items")[0] == "lenient"


@pytest.mark.django_db
def test_binding_the_schema_already_bound_changes_nothing(owner):
    schema = make_schema(owner.service, "person", PERSON)
    make_collection(owner.service, "people", schema)
    before = collection_row("people")

    response = owner.patch(collection_url("people"), {"schema": "person"}, format="json")

    assert (response.status_code, response.json()["schema"]) == (200, "person")
    assert collection_row("people") == before


@pytest.mark.django_db
def test_null_unbinds_and_writes_are_no_longer_validated(owner):
    schema = make_schema(owner.service, "person", PERSON)
    make_collection(owner.service, "people", schema, {"a": {"name": "Ann"}})

    response = owner.patch(collection_url("people"), {"schema": None}, format="json")
    write = owner.post(records_url("people"), {"key": "b", "data": {"name": 5}}, format="json")

    assert (response.status_code, response.json()["schema"]) == (200, None)
    assert collection_row("people")[0] is None
    assert (write.status_code, write.json()["schema_version"]) == (201, None)
    assert Record.objects.get(key="b").schema_version is None


@pytest.mark.django_db
def test_patching_with_an_unknown_schema_is_a_422_and_changes_nothing(owner, items):
    before = collection_row("items")

    response = owner.patch(collection_url("items"), {"schema": "nobody"}, format="json")

    assert error_paths(assert_problem(response, 422, "unknown_schema")) == ["/schema"]
    assert collection_row("items") == before


@pytest.mark.django_db
def test_patching_with_a_schema_without_versions_is_a_422_and_changes_nothing(owner, items):
    make_schema(owner.service, "person")
    before = collection_row("items")

    response = owner.patch(collection_url("items"), {"schema": "person"}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_has_no_versions")) == ["/schema"]
    assert collection_row("items") == before


@pytest.mark.django_db
def test_a_stream_cannot_be_bound_by_patch(owner):
    make_schema(owner.service, "person", PERSON)
    core_services.collection_create(name="events", kind="stream", owner=owner.service, actor=TEST_ACTOR)
    before = collection_row("events")

    response = owner.patch(collection_url("events"), {"schema": "person"}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_on_stream")) == ["/schema"]
    assert collection_row("events") == before


@pytest.mark.django_db
@pytest.mark.parametrize(("caller", "status"), [("reader", 403), ("writer", 403), ("outsider", 404)])
def test_only_the_owner_or_an_operator_binds(request, owner, items, caller, status):
    make_schema(owner.service, "person", PERSON)
    before = collection_row("items")
    client = request.getfixturevalue(caller)

    response = client.patch(collection_url("items"), {"schema": "person"}, format="json")

    assert_problem(response, status)
    assert collection_row("items") == before


@pytest.mark.django_db
def test_an_operator_binds_and_unbinds_any_collection(operator, owner, items):
    make_schema(owner.service, "person", PERSON)

    bound = operator.patch(collection_url("items"), {"schema": "person"}, format="json")
    unbound = operator.patch(collection_url("items"), {"schema": None}, format="json")

    assert (bound.status_code, bound.json()["schema"]) == (200, "person")
    assert (unbound.status_code, unbound.json()["schema"]) == (200, None)


@pytest.mark.django_db
def test_a_bound_schema_cannot_be_replaced_by_registering_a_version_that_records_fail(owner):
    schema = make_schema(owner.service, "person", obj({"n": NUMBER}), compatibility="NONE")
    make_collection(owner.service, "items", schema, {"a": {"n": 1.5}})

    response = owner.post(versions_url("person"), {"definition": obj({"n": INTEGER})}, format="json")

    assert_problem(response, 409, "invalid_records")
    assert schema.versions.count() == 1


# --- concurrency (PostgreSQL: two real connections, the waiting one observed in pg_stat_activity) ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_record_write_waits_for_a_concurrent_binding_and_is_validated_against_it(live_server, owner):
    """The binding locks the collection row; a write validates only once the binding has committed."""
    schema = make_schema(owner.service, "person", PERSON)
    collection = make_collection(owner.service, "people", None)

    with HeldTransaction(
        lambda: core_services.collection_update(collection=collection, schema=schema, actor=TEST_ACTOR)
    ):
        write = Request(
            live_server.url, owner.token, "POST", records_url("people"), {"key": "k", "data": {"name": 5}}
        )
        wait_until_blocked("FOR SHARE")
        assert write.outcome == {}  # no answer while the binding is open

    outcome = write.answer()
    assert outcome.get("status") == 422, outcome
    assert outcome["body"]["code"] == "schema_validation_failed"
    assert [e["path"] for e in outcome["body"]["errors"]] == ["/data/name"]
    assert Collection.objects.get(name="people").schema == schema
    assert not Record.objects.filter(collection=collection).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_binding_waits_for_a_concurrent_registration_and_checks_the_new_version(live_server, owner):
    """A version registered while a binding checks the records must be the one the records are checked
    against: otherwise the collection ends up bound with records its latest version rejects."""
    schema = make_schema(owner.service, "measure", obj({"n": NUMBER}), compatibility="FORWARD")
    collection = make_collection(owner.service, "measures", None, {"a": {"n": 1.5}})

    with HeldTransaction(
        lambda: schema_services.schema_version_register(
            schema=schema, definition=obj({"n": INTEGER}), actor=TEST_ACTOR
        )
    ) as registration:
        bind = Request(
            live_server.url, owner.token, "PATCH", collection_url("measures"), {"schema": "measure"}
        )
        wait_until_blocked("")
        assert bind.outcome == {}

    assert registration.errors == []
    outcome = bind.answer()
    assert outcome.get("status") == 409, outcome
    assert (outcome["body"]["code"], outcome["body"]["count"]) == ("invalid_records", 1)
    assert "version 2" in outcome["body"]["detail"]
    collection.refresh_from_db()
    assert collection.schema is None
    assert schema.versions.count() == 2
