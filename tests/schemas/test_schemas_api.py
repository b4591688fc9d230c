"""GET/POST /schemas/ and GET/PATCH /schemas/{name}/: the registry's schemas and who may change them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from schemas.models import Schema
from tests.core.records_support import assert_problem, error_paths
from tests.schemas.schema_support import INTEGER, make_schema, obj, schema_url, schemas_url

pytestmark = pytest.mark.django_db

MODES = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
]


def schema_row(name: str) -> tuple:
    return Schema.objects.values_list(
        "name", "owner__name", "compatibility", "description", "updated_at"
    ).get(name=name)


# --- create --------------------------------------------------------------------------------------


def test_a_service_creates_a_schema_it_owns(owner):
    response = owner.post(schemas_url(), {"name": "people", "description": "who is who"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "name",
        "compatibility",
        "owner",
        "description",
        "latest_version",
        "created_at",
        "updated_at",
    }
    assert body["name"] == "people"
    assert body["compatibility"] == "BACKWARD"  # the default
    assert body["owner"] == "owner"
    assert body["description"] == "who is who"
    assert body["latest_version"] is None
    assert response["Location"].endswith(schema_url("people"))
    schema = Schema.objects.get(name="people")
    assert (schema.owner, schema.compatibility, schema.description) == (
        owner.service,
        "BACKWARD",
        "who is who",
    )
    assert schema.versions.count() == 0


@pytest.mark.parametrize("mode", MODES)
def test_the_compatibility_mode_can_be_chosen_at_creation(owner, mode):
    response = owner.post(schemas_url(), {"name": "people", "compatibility": mode}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["compatibility"] == mode
    assert Schema.objects.get(name="people").compatibility == mode


def test_a_service_may_name_itself_as_owner(owner):
    response = owner.post(schemas_url(), {"name": "people", "owner": "owner"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["owner"] == "owner"


def test_a_service_cannot_create_a_schema_for_another_service(owner, reader):
    response = owner.post(schemas_url(), {"name": "people", "owner": "reader"}, format="json")

    body = assert_problem(response, 422, "validation_failed")
    assert error_paths(body) == ["/owner"]
    assert not Schema.objects.exists()


def test_an_operator_creates_a_schema_for_the_owner_it_names(operator, owner):
    response = operator.post(schemas_url(), {"name": "people", "owner": "owner"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["owner"] == "owner"
    assert Schema.objects.get(name="people").owner == owner.service


@pytest.mark.parametrize("extra", [{}, {"owner": "nobody"}])
def test_an_operator_must_name_an_existing_owner(operator, owner, extra):
    response = operator.post(schemas_url(), {"name": "people", **extra}, format="json")

    body = assert_problem(response, 422, "validation_failed")
    assert error_paths(body) == ["/owner"]
    assert not Schema.objects.exists()


def test_a_taken_name_is_a_409_and_the_first_schema_stays(owner, reader):
    make_schema(owner.service, "people")
    before = schema_row("people")

    response = reader.post(schemas_url(), {"name": "people", "compatibility": "NONE"}, format="json")

    assert_problem(response, 409, "schema_exists")
    assert Schema.objects.count() == 1
    assert schema_row("people") == before


@pytest.mark.parametrize(
    "name", ["People", "1people", "peo ple", "people/x", "people.", "a..b", "people\n", "", "p" * 101]
)
def test_an_invalid_name_is_a_422(owner, name):
    response = owner.post(schemas_url(), {"name": name}, format="json")

    body = assert_problem(response, 422)
    assert body["code"] in ("invalid_name", "validation_failed")
    assert error_paths(body) == ["/name"]
    assert not Schema.objects.exists()


def test_a_dotted_name_of_at_most_100_characters_is_accepted(owner):
    name = "billing.invoice-line_v2." + "x" * 76

    response = owner.post(schemas_url(), {"name": name}, format="json")

    assert response.status_code == 201, response.content
    assert Schema.objects.filter(name=name).exists()


@pytest.mark.parametrize("compatibility", ["SIDEWAYS", "backward", "", None, 1])
def test_an_unknown_compatibility_mode_is_a_422(owner, compatibility):
    response = owner.post(schemas_url(), {"name": "people", "compatibility": compatibility}, format="json")

    body = assert_problem(response, 422, "validation_failed")
    assert error_paths(body) == ["/compatibility"]
    assert not Schema.objects.exists()


def test_unknown_and_missing_fields_are_422(owner):
    unknown = owner.post(schemas_url(), {"name": "people", "definition": {}}, format="json")
    missing = owner.post(schemas_url(), {"description": "no name"}, format="json")

    assert error_paths(assert_problem(unknown, 422, "validation_failed")) == ["/definition"]
    assert error_paths(assert_problem(missing, 422, "validation_failed")) == ["/name"]
    assert not Schema.objects.exists()


def test_creating_a_schema_needs_authentication(db):
    response = APIClient().post(schemas_url(), {"name": "people"}, format="json")

    assert_problem(response, 401)
    assert not Schema.objects.exists()


# --- list and get --------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["owner", "reader", "outsider", "operator"])
def test_any_authenticated_caller_lists_the_schemas(request, owner, caller):
    make_schema(owner.service, "people", obj({"n": INTEGER}))
    make_schema(owner.service, "accounts")
    client = request.getfixturevalue(caller)

    response = client.get(schemas_url())

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is None
    assert [(s["name"], s["owner"], s["latest_version"]) for s in body["results"]] == [
        ("accounts", "owner", None),
        ("people", "owner", 1),
    ]


def test_listing_schemas_needs_authentication(db):
    assert_problem(APIClient().get(schemas_url()), 401)


def test_the_list_shows_the_latest_version_number(owner):
    make_schema(owner.service, "people", obj({"n": INTEGER}), obj({"n": INTEGER}, title="2"), obj({"n": {}}))

    response = owner.get(schemas_url())

    assert [s["latest_version"] for s in response.json()["results"]] == [3]


def test_the_list_pages_with_an_opaque_cursor(owner):
    for name in ["e", "c", "a", "d", "b"]:
        make_schema(owner.service, name)

    first = owner.get(schemas_url(), {"limit": 2})
    second = owner.get(first.json()["next"])
    third = owner.get(second.json()["next"])

    assert [s["name"] for s in first.json()["results"]] == ["a", "b"]
    assert [s["name"] for s in second.json()["results"]] == ["c", "d"]
    assert [s["name"] for s in third.json()["results"]] == ["e"]
    assert first.json()["next"].startswith("http://testserver" + schemas_url() + "?")
    assert third.json()["next"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1"])
def test_a_bad_limit_is_a_400(owner, limit):
    assert_problem(owner.get(schemas_url(), {"limit": limit}), 400, "invalid_limit")


def test_a_foreign_cursor_is_a_400(owner):
    assert_problem(owner.get(schemas_url(), {"cursor": "not-a-cursor"}), 400)


def test_listing_costs_the_same_queries_for_one_schema_as_for_many(owner):
    make_schema(owner.service, "a", obj({"n": INTEGER}))
    with CaptureQueriesContext(connection) as one:
        assert owner.get(schemas_url()).status_code == 200
    for name in ["b", "c", "d", "e"]:
        make_schema(owner.service, name, obj({"n": INTEGER}), obj({"n": INTEGER}, title="2"))

    with CaptureQueriesContext(connection) as many:
        response = owner.get(schemas_url())

    assert len(response.json()["results"]) == 5
    assert len(many) == len(one)


def test_the_list_is_served_without_the_trailing_slash(owner):
    make_schema(owner.service, "people")

    response = owner.get(schemas_url().rstrip("/"))

    assert response.status_code == 200
    assert [s["name"] for s in response.json()["results"]] == ["people"]


@pytest.mark.parametrize("caller", ["owner", "outsider", "operator"])
def test_any_authenticated_caller_gets_a_schema(request, owner, caller):
    make_schema(owner.service, "people", obj({"n": INTEGER}), compatibility="FULL")
    client = request.getfixturevalue(caller)

    response = client.get(schema_url("people"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["owner"], body["compatibility"], body["latest_version"]) == (
        "people",
        "owner",
        "FULL",
        1,
    )


def test_an_unknown_schema_is_a_404(owner):
    assert_problem(owner.get(schema_url("nobody")), 404, "schema_not_found")


# --- patch ---------------------------------------------------------------------------------------


def test_the_owner_changes_compatibility_and_description(owner):
    schema = make_schema(owner.service, "people")
    created_at = schema.updated_at

    response = owner.patch(
        schema_url("people"), {"compatibility": "FULL_TRANSITIVE", "description": "new"}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["compatibility"], body["description"]) == ("FULL_TRANSITIVE", "new")
    schema.refresh_from_db()
    assert (schema.compatibility, schema.description) == ("FULL_TRANSITIVE", "new")
    assert schema.updated_at > created_at


def test_a_patch_changes_only_the_fields_it_names(owner):
    schema = make_schema(owner.service, "people", compatibility="FORWARD")

    response = owner.patch(schema_url("people"), {"description": "only this"}, format="json")

    assert response.status_code == 200, response.content
    schema.refresh_from_db()
    assert (schema.compatibility, schema.description) == ("FORWARD", "only this")


def test_an_operator_patches_any_schema(operator, owner):
    make_schema(owner.service, "people")

    response = operator.patch(schema_url("people"), {"compatibility": "NONE"}, format="json")

    assert response.status_code == 200, response.content
    assert Schema.objects.get(name="people").compatibility == "NONE"


@pytest.mark.parametrize("caller", ["reader", "writer", "outsider"])
def test_other_services_get_403_on_patch_and_nothing_changes(request, owner, caller):
    make_schema(owner.service, "people")
    before = schema_row("people")
    client = request.getfixturevalue(caller)

    response = client.patch(schema_url("people"), {"compatibility": "NONE"}, format="json")

    assert_problem(response, 403, "forbidden")
    assert schema_row("people") == before


def test_patching_needs_authentication(owner):
    make_schema(owner.service, "people")
    before = schema_row("people")

    assert_problem(APIClient().patch(schema_url("people"), {"compatibility": "NONE"}, format="json"), 401)
    assert schema_row("people") == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"compatibility": "SIDEWAYS"}, "/compatibility"),
        ({"compatibility": None}, "/compatibility"),
        ({"name": "other"}, "/name"),
        ({"owner": "reader"}, "/owner"),
    ],
)
def test_an_invalid_patch_is_a_422_and_nothing_changes(owner, body, path):
    make_schema(owner.service, "people")
    before = schema_row("people")

    response = owner.patch(schema_url("people"), body, format="json")

    assert error_paths(assert_problem(response, 422, "validation_failed")) == [path]
    assert schema_row("people") == before


def test_patching_an_unknown_schema_is_a_404(owner):
    assert_problem(
        owner.patch(schema_url("nobody"), {"compatibility": "NONE"}, format="json"), 404, "schema_not_found"
    )
