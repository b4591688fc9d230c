"""Collections bound to another service's schema are pinned to a version: the schema's owner neither
sees them nor blocks them, and only the collection's owner (or an operator) moves the pin."""

import pytest

from core import services as core_services
from core.models import Collection, Record
from schemas import services as schema_services
from tests.actors import TEST_ACTOR
from tests.core.records_support import (
    assert_problem,
    bulk_url,
    db_state,
    error_paths,
    record_url,
    records_url,
)
from tests.schemas.schema_support import (
    INTEGER,
    STRING,
    HeldTransaction,
    Request,
    collection_url,
    collections_url,
    compatibility_url,
    make_collection,
    make_schema,
    obj,
    registry_state,
    schema_url,
    stored,
    versions_url,
)

pytestmark = pytest.mark.django_db

PERSON = obj({"name": STRING, "age": INTEGER}, ["name"])
# Not backward compatible (PERSON is open, so its documents may hold any email): the schemas here use
# the mode NONE, so that a version can refuse what the one before accepted.
PERSON_V2 = obj({"name": STRING, "age": INTEGER, "email": STRING}, ["name"])
REJECT_EVERYTHING = False  # the JSON Schema that no document satisfies


def binding(name: str) -> tuple:
    """The collection's schema name and pinned version (None: it follows the latest), as stored."""
    return Collection.objects.values_list("schema__name", "schema_version").get(name=name)


def register(client, name: str, definition):
    return client.post(versions_url(name), {"definition": definition}, format="json")


def dry_run(client, name: str, definition):
    return client.post(compatibility_url(name), {"definition": definition}, format="json")


def create(client, collection: str, key: str, data: dict):
    return client.post(records_url(collection), {"key": key, "data": data}, format="json")


# --- binding ---------------------------------------------------------------------------------------


def test_a_collection_bound_to_another_services_schema_is_pinned_to_the_latest_version(owner, outsider):
    make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")

    response = outsider.post(collections_url(), {"name": "staff", "schema": "person"}, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["schema"], response.json()["schema_version"]) == ("person", 2)
    assert binding("staff") == ("person", 2)
    assert outsider.get(collection_url("staff")).json()["schema_version"] == 2


def test_binding_another_services_schema_by_patch_pins_the_latest_version(owner, outsider):
    make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")
    make_collection(outsider.service, "staff", None, {"a": {"name": "Ann"}})

    response = outsider.patch(collection_url("staff"), {"schema": "person"}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["schema"], response.json()["schema_version"]) == ("person", 2)
    assert binding("staff") == ("person", 2)


def test_a_collection_of_the_schemas_owner_follows_the_latest_version(owner):
    make_schema(owner.service, "person", PERSON, compatibility="NONE")

    response = owner.post(collections_url(), {"name": "people", "schema": "person"}, format="json")
    register(owner, "person", PERSON_V2)
    write = create(owner, "people", "ann", {"name": "Ann", "email": 5})

    assert (response.status_code, response.json()["schema_version"]) == (201, None)
    assert binding("people") == ("person", None)
    body = assert_problem(write, 422, "schema_validation_failed")
    assert (body["schema_version"], error_paths(body)) == (2, ["/data/email"])


def test_an_operator_binding_another_services_collection_pins_it(operator, owner, outsider):
    make_schema(owner.service, "person", PERSON, compatibility="NONE")

    response = operator.post(
        collections_url(), {"name": "staff", "owner": "outsider", "schema": "person"}, format="json"
    )

    assert (response.status_code, response.json()["schema_version"]) == (201, 1)
    assert binding("staff") == ("person", 1)


def test_an_explicit_schema_version_pins_that_version(owner, outsider):
    make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")

    response = outsider.post(
        collections_url(), {"name": "staff", "schema": "person", "schema_version": 1}, format="json"
    )
    write = create(outsider, "staff", "ann", {"name": "Ann", "email": 5})  # valid under 1, not under 2

    assert (response.status_code, response.json()["schema_version"]) == (201, 1)
    assert (write.status_code, write.json()["schema_version"]) == (201, 1), write.content
    assert stored(Collection.objects.get(name="staff")) == {"ann": (1, {"name": "Ann", "email": 5}, 1)}


def test_the_schemas_owner_may_pin_its_own_collection_and_null_makes_it_follow_again(owner):
    schema = make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")
    make_collection(owner.service, "people", schema)

    pinned = owner.patch(collection_url("people"), {"schema_version": 1}, format="json")
    under_pin = create(owner, "people", "ann", {"name": "Ann", "email": 5})
    following = owner.patch(collection_url("people"), {"schema_version": None}, format="json")

    assert (pinned.status_code, pinned.json()["schema_version"]) == (200, 1)
    assert (under_pin.status_code, under_pin.json()["schema_version"]) == (201, 1)
    # Following the latest checks the stored records against it: Ann's email is no string.
    body = assert_problem(following, 409, "invalid_records")
    assert (body["count"], body["sample_keys"]) == (1, ["ann"])
    assert binding("people") == ("person", 1)

    owner.put(record_url("ann", "people"), {"data": {"name": "Ann"}}, format="json")
    following = owner.patch(collection_url("people"), {"schema_version": None}, format="json")
    assert (following.status_code, following.json()["schema_version"]) == (200, None)
    assert binding("people") == ("person", None)


def test_unbinding_clears_the_pin(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    make_collection(outsider.service, "staff", schema)

    response = outsider.patch(collection_url("staff"), {"schema": None}, format="json")

    assert (response.status_code, response.json()["schema"], response.json()["schema_version"]) == (
        200,
        None,
        None,
    )
    assert binding("staff") == (None, None)


def test_rebinding_to_another_foreign_schema_pins_its_latest_version(owner, outsider):
    person = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    make_schema(owner.service, "member", PERSON, PERSON_V2, obj({"name": STRING}), compatibility="NONE")
    make_collection(outsider.service, "staff", person, {"a": {"name": "Ann"}})

    response = outsider.patch(collection_url("staff"), {"schema": "member"}, format="json")

    assert (response.status_code, response.json()["schema_version"]) == (200, 3)
    assert binding("staff") == ("member", 3)


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({"schema": "person", "schema_version": 3}, "unknown_schema_version", "/schema_version"),
        ({"schema": "person", "schema_version": 0}, "validation_failed", "/schema_version"),
        ({"schema": "person", "schema_version": 2**31}, "validation_failed", "/schema_version"),
        ({"schema": "person", "schema_version": True}, "validation_failed", "/schema_version"),
        ({"schema": "person", "schema_version": None}, "schema_version_required", "/schema_version"),
        ({"schema_version": 1}, "schema_version_without_schema", "/schema_version"),
        ({"schema": None, "schema_version": 1}, "schema_version_without_schema", "/schema_version"),
    ],
)
def test_a_bad_schema_version_on_create_is_a_422_and_creates_nothing(owner, outsider, body, code, path):
    make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")

    response = outsider.post(collections_url(), {"name": "staff", **body}, format="json")

    assert error_paths(assert_problem(response, 422, code)) == [path]
    assert not Collection.objects.filter(name="staff").exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"schema_version": 3}, "unknown_schema_version"),
        ({"schema_version": -1}, "validation_failed"),
        ({"schema_version": 2**63}, "validation_failed"),
        ({"schema_version": None}, "schema_version_required"),
        ({"schema": None, "schema_version": 1}, "schema_version_without_schema"),
    ],
)
def test_a_bad_schema_version_on_patch_is_a_422_and_changes_nothing(owner, outsider, body, code):
    schema = make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")
    make_collection(outsider.service, "staff", schema)
    before = Collection.objects.values_list("schema", "schema_version", "updated_at").get(name="staff")

    response = outsider.patch(collection_url("staff"), body, format="json")

    assert error_paths(assert_problem(response, 422, code)) == ["/schema_version"]
    after = Collection.objects.values_list("schema", "schema_version", "updated_at").get(name="staff")
    assert after == before


def test_a_schema_version_on_an_unbound_collection_is_a_422(outsider):
    make_collection(outsider.service, "staff")

    response = outsider.patch(collection_url("staff"), {"schema_version": 1}, format="json")

    assert error_paths(assert_problem(response, 422, "schema_version_without_schema")) == ["/schema_version"]
    assert binding("staff") == (None, None)


# --- the schema's owner cannot see or block a pinned collection (the issue's reproductions) ---------


def test_a_reject_everything_version_under_none_does_not_block_writes_to_a_foreign_collection(
    owner, outsider
):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(outsider.service, "staff", schema, {"ann": {"name": "Ann"}})

    registered = register(owner, "person", REJECT_EVERYTHING)
    created = create(outsider, "staff", "bob", {"name": "Bob"})
    replaced = outsider.put(record_url("ann", "staff"), {"data": {"name": "Ann", "age": 3}}, format="json")
    patched = outsider.patch(record_url("bob", "staff"), {"data": {"age": 4}}, format="json")
    bulk = outsider.post(
        bulk_url("staff"),
        {"mode": "upsert", "records": [{"key": "cy", "data": {"name": "Cy"}}]},
        format="json",
    )
    refused = create(outsider, "staff", "dee", {"age": 1})  # still validated, against the pinned version

    assert (registered.status_code, registered.json()["version"]) == (201, 2), registered.content
    assert [r.status_code for r in (created, replaced, patched, bulk)] == [201, 200, 200, 201]
    body = assert_problem(refused, 422, "schema_validation_failed")
    assert body["schema_version"] == 1
    assert stored(staff) == {
        "ann": (2, {"name": "Ann", "age": 3}, 1),
        "bob": (2, {"name": "Bob", "age": 4}, 1),
        "cy": (1, {"name": "Cy"}, 1),
    }
    assert binding("staff") == ("person", 1)


def test_a_refused_registration_names_only_the_owners_own_collections(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    make_collection(owner.service, "people", schema, {"a": {"name": "Ann", "age": 3}, "b": {"name": "Bob"}})
    make_collection(outsider.service, "staff", schema, {f"s{i}": {"name": "S", "age": i} for i in range(5)})
    before = registry_state(schema)

    response = register(owner, "person", obj({"name": STRING, "age": STRING}))

    body = assert_problem(response, 409, "invalid_records")
    assert body["count"] == 1
    assert body["invalid_records"] == {"people": {"count": 1, "sample_keys": ["a"]}}
    assert "staff" not in response.content.decode()
    assert registry_state(schema) == before


@pytest.mark.parametrize("guess", ["^987", "^123"])
def test_a_dry_run_cannot_probe_the_records_of_a_foreign_collection(owner, outsider, guess):
    """The probe of the issue: a definition that fails only if a guess about Bob's ssn is wrong."""
    schema = make_schema(owner.service, "person", {"type": "object"}, compatibility="NONE")
    make_collection(outsider.service, "staff", schema, {"bob": {"name": "bob", "ssn": "987-65-4321"}})
    probe = {
        "if": {"properties": {"name": {"const": "bob"}}, "required": ["name"]},
        "then": {"properties": {"ssn": {"pattern": guess}}},
    }

    report = dry_run(owner, "person", probe)
    registration = register(owner, "person", probe)

    assert report.status_code == 200, report.content
    assert report.json() == {"compatible": True, "errors": [], "invalid_records": {}}
    assert (registration.status_code, registration.json()["version"]) == (201, 2)


def test_the_schemas_owner_cannot_reach_a_foreign_pinned_collection(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")
    make_collection(outsider.service, "staff", schema)

    moved = owner.patch(collection_url("staff"), {"schema_version": 1}, format="json")

    assert_problem(moved, 404, "collection_not_found")
    assert binding("staff") == ("person", 2)
    assert "staff" not in owner.get(schema_url("person")).content.decode()


# --- moving the pin --------------------------------------------------------------------------------


def test_the_collections_owner_moves_its_pin_forward_and_writes_follow_it(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(outsider.service, "staff", schema)
    create(outsider, "staff", "ann", {"name": "Ann"})
    register(owner, "person", PERSON_V2)
    before = db_state(staff)

    moved = outsider.patch(collection_url("staff"), {"schema_version": 2}, format="json")
    refused = create(outsider, "staff", "bob", {"name": "Bob", "email": 5})
    created = create(outsider, "staff", "cy", {"name": "Cy", "email": "cy@example.org"})

    assert (moved.status_code, moved.json()["schema"], moved.json()["schema_version"]) == (200, "person", 2)
    assert binding("staff") == ("person", 2)
    assert assert_problem(refused, 422, "schema_validation_failed")["schema_version"] == 2
    assert (created.status_code, created.json()["schema_version"]) == (201, 2)
    assert db_state(staff)["records"][0] == before["records"][0]  # moving the pin rewrites no record
    assert Record.objects.get(collection=staff, key="ann").schema_version == 1  # written under the old pin


def test_moving_the_pin_to_a_version_its_records_fail_is_a_409_and_changes_nothing(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(
        outsider.service, "staff", schema, {f"k{i:02d}": {"name": "N"} for i in range(12)}
    )
    register(owner, "person", REJECT_EVERYTHING)
    before = Collection.objects.values_list("schema_version", "updated_at").get(name="staff"), db_state(staff)

    response = outsider.patch(collection_url("staff"), {"schema_version": 2}, format="json")

    body = assert_problem(response, 409, "invalid_records")
    assert (body["count"], body["sample_keys"]) == (12, [f"k{i:02d}" for i in range(10)])
    assert "version 2" in body["detail"]
    after = Collection.objects.values_list("schema_version", "updated_at").get(name="staff"), db_state(staff)
    assert after == before


def test_an_operator_moves_the_pin_of_any_collection(operator, owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    make_collection(outsider.service, "staff", schema)
    register(owner, "person", PERSON_V2)

    response = operator.patch(collection_url("staff"), {"schema_version": 2}, format="json")

    assert (response.status_code, response.json()["schema_version"]) == (200, 2)
    assert binding("staff") == ("person", 2)


@pytest.mark.parametrize(("access", "status"), [("read", 403), ("write", 403)])
def test_a_service_with_a_grant_cannot_move_the_pin(owner, outsider, reader, access, status):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(outsider.service, "staff", schema)
    core_services.grant_set(collection=staff, service_name="reader", access=access, actor=TEST_ACTOR)
    register(owner, "person", PERSON_V2)

    assert_problem(reader.patch(collection_url("staff"), {"schema_version": 2}, format="json"), status)
    assert binding("staff") == ("person", 1)


def test_the_pin_may_move_back_to_an_earlier_version_its_records_satisfy(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, PERSON_V2, compatibility="NONE")
    make_collection(outsider.service, "staff", schema, {"ann": {"name": "Ann"}})

    response = outsider.patch(collection_url("staff"), {"schema_version": 1}, format="json")

    assert (response.status_code, response.json()["schema_version"]) == (200, 1)
    assert binding("staff") == ("person", 1)


def test_repeating_the_current_pin_changes_nothing(owner, outsider):
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    make_collection(outsider.service, "staff", schema)
    before = Collection.objects.values_list("updated_at", flat=True).get(name="staff")

    response = outsider.patch(
        collection_url("staff"), {"schema": "person", "schema_version": 1}, format="json"
    )

    assert (response.status_code, response.json()["schema_version"]) == (200, 1)
    assert Collection.objects.values_list("updated_at", flat=True).get(name="staff") == before


# --- no stall across the boundary (PostgreSQL: real connections, real locks) ------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_registration_does_not_wait_for_a_write_to_a_foreign_collection(live_server, owner, outsider):
    """An open write holds its collection's row FOR SHARE; registration no longer locks that row."""
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(outsider.service, "staff", schema)

    with HeldTransaction(
        lambda: core_services.record_create(
            collection=staff, key="ann", data={"name": "Ann"}, actor=TEST_ACTOR
        )
    ):
        registration = Request(
            live_server.url, owner.token, "POST", versions_url("person"), {"definition": REJECT_EVERYTHING}
        )
        registration.thread.join(timeout=20)
        outcome = dict(registration.outcome)

    registration.answer()
    assert outcome.get("status") == 201, outcome
    assert schema.versions.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_write_to_a_foreign_collection_does_not_wait_for_a_registration(live_server, owner, outsider):
    """An open registration locks the schema and its owner's collections, not the pinned ones."""
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(outsider.service, "staff", schema)

    with HeldTransaction(
        lambda: schema_services.schema_version_register(
            schema=schema, definition=REJECT_EVERYTHING, actor=TEST_ACTOR
        )
    ) as registration:
        write = Request(
            live_server.url,
            outsider.token,
            "POST",
            records_url("staff"),
            {"key": "ann", "data": {"name": "A"}},
        )
        write.thread.join(timeout=20)
        outcome = dict(write.outcome)

    write.answer()
    assert registration.errors == []
    assert outcome.get("status") == 201, outcome
    assert outcome["body"]["schema_version"] == 1
    assert stored(staff) == {"ann": (1, {"name": "A"}, 1)}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_registration_does_not_wait_for_a_foreign_binding_checking_its_records(live_server, owner, outsider):
    """A foreign binding checks its records against an immutable version: it takes no lock on the schema."""
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    staff = make_collection(outsider.service, "staff", None, {"ann": {"name": "Ann"}})

    with HeldTransaction(
        lambda: core_services.collection_update(collection=staff, schema=schema, actor=TEST_ACTOR)
    ) as bind:
        registration = Request(
            live_server.url, owner.token, "POST", versions_url("person"), {"definition": REJECT_EVERYTHING}
        )
        registration.thread.join(timeout=20)
        outcome = dict(registration.outcome)

    registration.answer()
    assert bind.errors == []
    assert outcome.get("status") == 201, outcome
    assert binding("staff") == ("person", 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_binding_a_foreign_collection_does_not_wait_for_a_registration(live_server, owner, outsider):
    """Binding references the schema row (a foreign-key check locks it FOR KEY SHARE): registration must
    lock that row in a mode that does not conflict, or it would hold up every other service's binding."""
    schema = make_schema(owner.service, "person", PERSON, compatibility="NONE")
    make_collection(outsider.service, "staff", None, {"ann": {"name": "Ann"}})

    with HeldTransaction(
        lambda: schema_services.schema_version_register(schema=schema, definition=PERSON_V2, actor=TEST_ACTOR)
    ) as registration:
        created = Request(
            live_server.url, outsider.token, "POST", collections_url(), {"name": "rota", "schema": "person"}
        )
        bound = Request(
            live_server.url, outsider.token, "PATCH", collection_url("staff"), {"schema": "person"}
        )
        created.thread.join(timeout=20)
        bound.thread.join(timeout=20)
        outcomes = dict(created.outcome), dict(bound.outcome)

    created.answer(), bound.answer()
    assert registration.errors == []
    assert [outcome.get("status") for outcome in outcomes] == [201, 200], outcomes
    assert binding("rota") == binding("staff") == ("person", 1)
