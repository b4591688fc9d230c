"""POST /schemas/{name}/compatibility/: the dry run of registration, which writes nothing."""

import json

import pytest
from rest_framework.test import APIClient

from tests.core.records_support import assert_problem, db_state, error_paths
from tests.schemas.schema_support import (
    INTEGER,
    NUMBER,
    STRING,
    compatibility_url,
    make_collection,
    make_schema,
    nested_any_of,
    obj,
    registry_state,
    stored,
    versions_url,
)

pytestmark = pytest.mark.django_db


def dry_run(client, name: str, definition):
    return client.post(compatibility_url(name), {"definition": definition}, format="json")


def test_a_compatible_definition_is_reported_compatible_and_nothing_is_registered(owner):
    schema = make_schema(owner.service, "people", obj({"n": INTEGER}))
    before = registry_state(schema)

    response = dry_run(owner, "people", obj({"n": NUMBER}))

    assert response.status_code == 200, response.content
    assert response.json() == {"compatible": True, "errors": [], "invalid_records": {}}
    assert registry_state(schema) == before


def test_an_incompatible_definition_is_reported_with_its_errors(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))
    before = registry_state(schema)

    response = dry_run(owner, "people", obj({"n": INTEGER}))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["compatible"] is False
    assert body["invalid_records"] == {}
    assert [error["path"] for error in body["errors"]] == ["/properties/n/type"]
    assert "version 1" in body["errors"][0]["message"]
    assert registry_state(schema) == before


def test_the_dry_run_reports_what_registration_refuses(owner):
    make_schema(owner.service, "people", obj({"n": NUMBER}))

    report = dry_run(owner, "people", obj({"n": INTEGER})).json()
    refusal = owner.post(versions_url("people"), {"definition": obj({"n": INTEGER})}, format="json")

    assert report["errors"] == assert_problem(refusal, 409, "incompatible_schema")["errors"]


def test_invalid_records_are_counted_per_bound_collection_and_nothing_changes(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}), compatibility="FORWARD")
    items = make_collection(owner.service, "items", schema, {"a": {"n": 1}, "b": {"n": 1.5}, "c": {"n": 2.5}})
    more = make_collection(owner.service, "more", schema, {"x": {"n": 0.5}, "y": {"n": 7}})
    clean = make_collection(owner.service, "clean", schema, {"z": {"n": 3}})
    loose = make_collection(owner.service, "loose", None, {"w": {"n": 0.5}})  # unbound: not counted
    collections = [items, more, clean, loose]
    before = registry_state(schema), [db_state(c) for c in collections], [stored(c) for c in collections]

    response = dry_run(owner, "people", obj({"n": INTEGER}))

    assert response.status_code == 200, response.content
    assert response.json() == {"compatible": False, "errors": [], "invalid_records": {"items": 2, "more": 1}}
    after = registry_state(schema), [db_state(c) for c in collections], [stored(c) for c in collections]
    assert after == before


def test_incompatibilities_and_invalid_records_are_reported_together(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))
    make_collection(owner.service, "items", schema, {"a": {"n": 1.5}})

    body = dry_run(owner, "people", obj({"n": INTEGER})).json()

    assert body["compatible"] is False
    assert [error["path"] for error in body["errors"]] == ["/properties/n/type"]
    assert body["invalid_records"] == {"items": 1}


def test_a_definition_every_record_satisfies_is_compatible(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}), compatibility="FORWARD")
    make_collection(owner.service, "items", schema, {"a": {"n": 1}, "b": {"n": 2}})

    body = dry_run(owner, "people", obj({"n": INTEGER})).json()

    assert body == {"compatible": True, "errors": [], "invalid_records": {}}


def test_any_definition_is_compatible_with_a_schema_without_versions(owner):
    schema = make_schema(owner.service, "people")

    response = dry_run(owner, "people", obj({"name": STRING}, ["name"], closed=True))

    assert response.json() == {"compatible": True, "errors": [], "invalid_records": {}}
    assert schema.versions.count() == 0


def test_the_mode_none_reports_only_invalid_records(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}), compatibility="NONE")
    make_collection(owner.service, "items", schema, {"a": {"n": 1.5}})

    body = dry_run(owner, "people", obj({"n": STRING})).json()

    assert body == {"compatible": False, "errors": [], "invalid_records": {"items": 1}}


def test_the_dry_run_of_an_existing_definition_is_compatible(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))
    before = registry_state(schema)

    body = dry_run(owner, "people", obj({"n": NUMBER})).json()

    assert body == {"compatible": True, "errors": [], "invalid_records": {}}
    assert registry_state(schema) == before


@pytest.mark.parametrize(
    ("definition", "path"),
    [
        ({"type": "nope"}, "/definition/type"),
        (obj({"n": {"$ref": "https://example.com/n.json"}}), "/definition/properties/n/$ref"),
        ("a string", "/definition"),
    ],
)
def test_an_invalid_definition_is_a_422(owner, definition, path):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))
    before = registry_state(schema)

    response = dry_run(owner, "people", definition)

    assert error_paths(assert_problem(response, 422, "invalid_schema")) == [path]
    assert registry_state(schema) == before


def test_a_definition_the_database_cannot_store_is_a_422(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))

    body = json.dumps({"definition": obj({"n": NUMBER}, title="\ud800")})
    response = owner.generic("POST", compatibility_url("people"), body, content_type="application/json")

    assert error_paths(assert_problem(response, 422, "invalid_schema")) == ["/definition/title"]
    assert schema.versions.count() == 1


def test_a_missing_definition_is_a_422(owner):
    make_schema(owner.service, "people")

    response = owner.post(compatibility_url("people"), {}, format="json")

    assert error_paths(assert_problem(response, 422, "validation_failed")) == ["/definition"]


@pytest.mark.parametrize("caller", ["reader", "writer", "outsider"])
def test_other_services_get_403(request, owner, caller):
    make_schema(owner.service, "people", obj({"n": NUMBER}))
    client = request.getfixturevalue(caller)

    assert_problem(dry_run(client, "people", obj({"n": INTEGER})), 403, "forbidden")


def test_an_operator_runs_the_dry_run_of_any_schema(operator, owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))

    response = dry_run(operator, "people", obj({"n": INTEGER}))

    assert response.status_code == 200, response.content
    assert response.json()["compatible"] is False
    assert schema.versions.count() == 1


def test_the_dry_run_of_an_unknown_schema_is_a_404(owner):
    assert_problem(dry_run(owner, "nobody", obj({"n": NUMBER})), 404, "schema_not_found")


def test_the_dry_run_needs_authentication(owner):
    make_schema(owner.service, "people")

    assert_problem(dry_run(APIClient(), "people", obj({"n": NUMBER})), 401)


# --- cost ----------------------------------------------------------------------------------------


def test_a_definition_over_the_size_limit_is_a_413_and_nothing_changes(owner, settings):
    settings.NUCLEUS_SCHEMA_MAX_BYTES = 100
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))
    before = registry_state(schema)

    response = dry_run(owner, "people", obj({"n": NUMBER}, description="x" * 100))

    body = assert_problem(response, 413, "schema_too_large")
    assert error_paths(body) == ["/definition"]
    assert "the limit is 100" in body["errors"][0]["message"]
    assert registry_state(schema) == before


def test_a_change_too_complex_to_prove_is_reported_incompatible_with_the_reason(owner, settings):
    settings.NUCLEUS_SCHEMA_COMPAT_BUDGET = 1000
    schema = make_schema(owner.service, "people", nested_any_of(6, {"type": "string", "maxLength": 5}))
    before = registry_state(schema)

    response = dry_run(owner, "people", nested_any_of(6, {"type": "string", "maxLength": 4}))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["compatible"], error_paths(body), body["invalid_records"]) == (False, [""], {})
    assert "too complex to prove" in body["errors"][0]["message"]
    assert "1000 steps" in body["errors"][0]["message"]
    assert registry_state(schema) == before


def test_within_the_budget_the_same_change_gets_its_real_answer(owner, settings):
    settings.NUCLEUS_SCHEMA_COMPAT_BUDGET = 10_000
    make_schema(owner.service, "people", nested_any_of(6, {"type": "string", "maxLength": 5}))

    body = dry_run(owner, "people", nested_any_of(6, {"type": "string", "maxLength": 4})).json()

    assert (body["compatible"], error_paths(body)) == (False, ["/anyOf"])
    assert "one branch" in body["errors"][0]["message"]
