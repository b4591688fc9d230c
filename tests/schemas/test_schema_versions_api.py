"""POST/GET /schemas/{name}/versions/ and GET /schemas/{name}/versions/{n|latest}/: registering versions."""

import json

import pytest
from rest_framework.test import APIClient

from schemas import services
from schemas.models import Schema, SchemaVersion
from tests.actors import TEST_ACTOR
from tests.core.records_support import assert_problem, db_state, error_paths, records_url
from tests.schemas.schema_support import (
    DRAFT_07,
    INTEGER,
    NUMBER,
    STRING,
    HeldTransaction,
    Request,
    fingerprint,
    make_collection,
    make_schema,
    nested_any_of,
    obj,
    registry_state,
    schema_url,
    stored,
    version_url,
    versions_url,
    wait_until_blocked,
)

pytestmark = pytest.mark.django_db

PERSON = obj({"name": STRING, "age": INTEGER}, ["name"])


def register(client, name: str, definition):
    return client.post(versions_url(name), {"definition": definition}, format="json")


def version_numbers(schema: Schema) -> list[int]:
    return list(schema.versions.order_by("version").values_list("version", flat=True))


# --- registering ---------------------------------------------------------------------------------


def test_the_first_definition_becomes_version_1(owner):
    make_schema(owner.service, "people")

    response = register(owner, "people", PERSON)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"schema", "version", "definition", "fingerprint", "created_at", "created_by"}
    assert (body["schema"], body["version"], body["definition"]) == ("people", 1, PERSON)
    assert body["fingerprint"] == fingerprint(PERSON)
    assert body["created_by"] == "service:owner"
    assert response["Location"].endswith(version_url("people", 1))
    version = SchemaVersion.objects.get(schema__name="people")
    assert (version.version, version.definition, version.fingerprint) == (1, PERSON, fingerprint(PERSON))
    assert owner.get(schema_url("people")).json()["latest_version"] == 1


def test_each_new_definition_gets_the_next_number(owner):
    schema = make_schema(owner.service, "people", PERSON)
    second = obj({"name": STRING, "age": NUMBER}, ["name"])  # integer -> number: backward compatible

    response = register(owner, "people", second)
    third = register(owner, "people", {**second, "title": "v3"})

    assert (response.status_code, response.json()["version"]) == (201, 2)
    assert (third.status_code, third.json()["version"]) == (201, 3)
    assert version_numbers(schema) == [1, 2, 3]
    assert owner.get(schema_url("people")).json()["latest_version"] == 3


def test_an_identical_definition_returns_the_existing_version_with_200(owner):
    schema = make_schema(owner.service, "people", PERSON)
    before = registry_state(schema)
    reordered = {key: PERSON[key] for key in reversed(list(PERSON))}
    reordered["properties"] = {key: PERSON["properties"][key] for key in reversed(list(PERSON["properties"]))}
    assert list(reordered) != list(PERSON)

    response = register(owner, "people", reordered)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["version"], body["fingerprint"], body["definition"]) == (1, fingerprint(PERSON), PERSON)
    assert response["Location"].endswith(version_url("people", 1))
    assert registry_state(schema) == before


def test_a_definition_identical_to_an_older_version_returns_that_version(owner):
    schema = make_schema(owner.service, "people", PERSON, {**PERSON, "title": "v2"})

    response = register(owner, "people", PERSON)

    assert (response.status_code, response.json()["version"]) == (200, 1)
    assert version_numbers(schema) == [1, 2]


def test_an_identical_definition_is_returned_even_when_the_mode_would_now_refuse_it(owner):
    schema = make_schema(
        owner.service, "people", obj({"n": NUMBER}), obj({"n": INTEGER}), compatibility="NONE"
    )
    owner.patch(schema_url("people"), {"compatibility": "BACKWARD_TRANSITIVE"}, format="json")

    response = register(owner, "people", obj({"n": INTEGER}))

    assert (response.status_code, response.json()["version"]) == (200, 2)
    assert version_numbers(schema) == [1, 2]


@pytest.mark.parametrize(
    ("definition", "path"),
    [
        ({"type": "nope"}, "/definition/type"),
        ({"properties": {"a": {"type": 5}}}, "/definition/properties/a/type"),
        ({"type": "integer", "minimum": "zero"}, "/definition/minimum"),
        ({"required": "name"}, "/definition/required"),
        ({"$schema": "http://json-schema.org/draft-04/schema#"}, "/definition/$schema"),
        ("a string", "/definition"),
        ([{"type": "object"}], "/definition"),
        (3, "/definition"),
    ],
)
def test_an_invalid_json_schema_is_a_422_pointing_into_the_definition(owner, definition, path):
    schema = make_schema(owner.service, "people", PERSON)
    before = registry_state(schema)

    response = register(owner, "people", definition)

    body = assert_problem(response, 422, "invalid_schema")
    assert error_paths(body) == [path]
    assert body["errors"][0]["message"]
    assert registry_state(schema) == before


def nested(depth: int) -> dict:
    definition = {"type": "string"}
    for _ in range(depth):
        definition = {"not": definition}
    return definition


@pytest.mark.parametrize(
    ("definition", "path", "words"),
    [
        ({"type": "string", "title": "\ud800"}, "/definition/title", "unpaired surrogate"),
        ({"type": "string", "description": "a\u0000b"}, "/definition/description", "NUL"),
        ({"type": "string", "enum": ["ok", "\udfff"]}, "/definition/enum/1", "unpaired surrogate"),
        (nested(64), "/definition" + "/not" * 64, "nested deeper"),
    ],
)
def test_a_definition_the_database_or_the_checks_cannot_take_is_a_422(owner, definition, path, words):
    schema = make_schema(owner.service, "people", PERSON)
    before = registry_state(schema)

    # json.dumps escapes lone surrogates, which the test client's own encoder cannot send.
    body = json.dumps({"definition": definition})
    response = owner.generic("POST", versions_url("people"), body, content_type="application/json")

    problem = assert_problem(response, 422, "invalid_schema")
    assert error_paths(problem) == [path]
    assert words in problem["errors"][0]["message"]
    assert registry_state(schema) == before


def test_a_definition_nested_just_within_the_limit_is_registered(owner):
    make_schema(owner.service, "people")

    response = register(owner, "people", nested(63))

    assert (response.status_code, response.json()["version"]) == (201, 1)


def test_a_definition_nested_as_deep_as_a_body_may_nest_is_a_422_at_the_definition_limit(owner):
    schema = make_schema(owner.service, "people")

    # 128 levels: the body, then 126 `not`s and the innermost schema.
    body = json.dumps({"definition": nested(126)})
    response = owner.generic("POST", versions_url("people"), body, content_type="application/json")

    assert error_paths(assert_problem(response, 422, "invalid_schema")) == ["/definition" + "/not" * 64]
    assert version_numbers(schema) == []


@pytest.mark.parametrize("depth", [127, 900])
def test_a_definition_nested_deeper_than_a_body_may_nest_is_a_400(owner, depth):
    schema = make_schema(owner.service, "people")

    body = json.dumps({"definition": nested(depth)})
    response = owner.generic("POST", versions_url("people"), body, content_type="application/json")

    assert "nests deeper than 128" in assert_problem(response, 400, "body_too_deep")["detail"]
    assert version_numbers(schema) == []


def padded(size: int) -> dict:
    """A definition of exactly size bytes as compact UTF-8 JSON (what the size limit measures)."""
    definition = {"type": "string", "description": ""}
    padding = size - len(json.dumps(definition, separators=(",", ":")).encode())
    return {"type": "string", "description": "é" * (padding // 2) + "x" * (padding % 2)}


def test_a_definition_over_the_size_limit_is_a_413_and_nothing_is_registered(owner, settings):
    assert settings.NUCLEUS_SCHEMA_MAX_BYTES == 256 * 1024  # the default
    schema = make_schema(owner.service, "people", PERSON)
    before = registry_state(schema)

    response = register(owner, "people", padded(256 * 1024 + 1))

    body = assert_problem(response, 413, "schema_too_large")
    assert body["errors"] == [
        {"path": "/definition", "message": "is 262145 bytes as compact JSON; the limit is 262144."}
    ]
    assert registry_state(schema) == before


def test_a_definition_at_the_size_limit_is_registered(owner):
    make_schema(owner.service, "people")

    response = register(owner, "people", padded(256 * 1024))

    assert (response.status_code, response.json()["version"]) == (201, 1), response.content


def test_the_size_limit_is_a_setting(owner, settings):
    settings.NUCLEUS_SCHEMA_MAX_BYTES = 1000
    schema = make_schema(owner.service, "people")

    refused = register(owner, "people", padded(1001))
    accepted = register(owner, "people", padded(1000))

    assert_problem(refused, 413, "schema_too_large")
    assert accepted.status_code == 201, accepted.content
    assert version_numbers(schema) == [1]


@pytest.mark.parametrize(
    ("definition", "path", "words"),
    [
        ({"type": "string", "pattern": "^(?=.*[0-9])"}, "/definition/pattern", "lookaround"),
        (
            obj({}, patternProperties={"^(a)\\1$": STRING}),
            "/definition/patternProperties/^(a)\\1$",
            "backreference",
        ),
        ({"propertyNames": {"pattern": "(?<!x)y"}}, "/definition/propertyNames/pattern", "lookaround"),
        ({"$defs": {"code": {"pattern": "[a-"}}}, "/definition/$defs/code/pattern", "not an ECMA-262"),
        ({"pattern": "^[a-z]+\\Z"}, "/definition/pattern", "not an ECMA-262"),
        ({"pattern": "^\\p{L}{1,50}$"}, "/definition/pattern", "256 KiB"),
        ({"$schema": DRAFT_07, "items": {"pattern": "(?=a)"}}, "/definition/items/pattern", "lookaround"),
    ],
)
def test_a_pattern_the_linear_time_engine_cannot_run_is_a_422_saying_why(owner, definition, path, words):
    schema = make_schema(owner.service, "people")

    response = register(owner, "people", definition)

    body = assert_problem(response, 422, "invalid_schema")
    assert error_paths(body) == [path]
    assert words in body["errors"][0]["message"]
    assert version_numbers(schema) == []


def test_patterns_weighing_more_than_4_mib_together_are_a_422_and_compiling_stops_there(owner):
    """Each \\p{L}\\p{Ll}... pattern compiles to about 256 KiB; 11000 of them would take gigabytes."""
    schema = make_schema(owner.service, "people")
    definition = obj({}, patternProperties={f"\\p{{L}}\\p{{Ll}}{i}": {} for i in range(11000)})
    assert len(json.dumps(definition, separators=(",", ":"))) < 256 * 1024

    response = register(owner, "people", definition)

    body = assert_problem(response, 422, "invalid_schema")
    assert error_paths(body) == ["/definition/patternProperties/\\p{L}\\p{Ll}16"]
    assert (
        "The 17 distinct patterns up to this one compile to more than 4 MiB" in body["errors"][0]["message"]
    )
    assert version_numbers(schema) == []


def test_a_pattern_used_many_times_weighs_once(owner):
    make_schema(owner.service, "people")
    letters = {"type": "string", "pattern": "^\\p{L}[\\p{L}\\p{N}]*$"}
    definition = obj({f"p{i}": letters for i in range(200)})

    response = register(owner, "people", definition)

    assert response.status_code == 201, response.content


def test_an_ecma_262_unicode_property_pattern_is_registered(owner):
    """Python's re refused \\p{Letter} as "not a regex"; it is ECMA-262, and the engine runs it."""
    make_schema(owner.service, "people")
    definition = obj({"name": {"type": "string", "pattern": "^\\p{Letter}+$"}})

    response = register(owner, "people", definition)

    assert response.status_code == 201, response.content
    assert SchemaVersion.objects.get(schema__name="people").definition == definition


def test_a_change_too_complex_to_prove_is_a_409_and_nothing_is_registered(owner, settings):
    settings.NUCLEUS_SCHEMA_COMPAT_BUDGET = 1000
    schema = make_schema(owner.service, "people", nested_any_of(6, {"type": "string", "maxLength": 5}))
    before = registry_state(schema)

    response = register(owner, "people", nested_any_of(6, {"type": "string", "maxLength": 4}))

    body = assert_problem(response, 409, "incompatible_schema")
    assert error_paths(body) == [""]
    assert "too complex to prove" in body["detail"]
    assert "1000 steps" in body["errors"][0]["message"]
    assert registry_state(schema) == before


@pytest.mark.parametrize(
    "ref", ["https://example.com/person.json", "person.json#/$defs/name", "//example.com/x", "urn:x:y"]
)
def test_a_reference_outside_the_document_is_a_422_and_nothing_is_fetched(owner, ref):
    schema = make_schema(owner.service, "people")
    definition = obj({"name": {"$ref": ref}})

    response = register(owner, "people", definition)

    body = assert_problem(response, 422, "invalid_schema")
    assert body["errors"] == [
        {"path": "/definition/properties/name/$ref", "message": body["errors"][0]["message"]}
    ]
    assert "never fetches" in body["errors"][0]["message"]
    assert version_numbers(schema) == []


def test_a_local_reference_to_nothing_is_a_422(owner):
    schema = make_schema(owner.service, "people")

    response = register(owner, "people", obj({"name": {"$ref": "#/$defs/missing"}}))

    body = assert_problem(response, 422, "invalid_schema")
    assert error_paths(body) == ["/definition/properties/name/$ref"]
    assert version_numbers(schema) == []


def test_a_reference_the_validator_cannot_resolve_is_a_422(owner):
    """A space is no URI-reference character: the pointer exists, yet jsonschema-rs cannot follow it."""
    schema = make_schema(owner.service, "people")
    definition = {"$defs": {"full name": STRING}, "$ref": "#/$defs/full name"}

    response = register(owner, "people", definition)

    body = assert_problem(response, 422, "invalid_schema")
    assert error_paths(body) == ["/definition"]
    assert "#/$defs/full name" in body["errors"][0]["message"]
    assert version_numbers(schema) == []


def test_a_local_reference_is_accepted(owner):
    definition = {
        "$defs": {"name": {"type": "string", "minLength": 1}},
        **obj({"name": {"$ref": "#/$defs/name"}}),
    }
    make_schema(owner.service, "people")

    response = register(owner, "people", definition)

    assert (response.status_code, response.json()["version"]) == (201, 1)


def test_a_draft_07_definition_is_accepted(owner):
    definition = {
        "$schema": DRAFT_07,
        "type": "object",
        "definitions": {"point": {"type": "array", "items": [NUMBER, NUMBER], "additionalItems": False}},
        "properties": {"at": {"$ref": "#/definitions/point"}},
    }
    make_schema(owner.service, "places")

    response = register(owner, "places", definition)

    assert response.status_code == 201, response.content
    assert response.json()["definition"] == definition
    assert SchemaVersion.objects.get(schema__name="places").definition["$schema"] == DRAFT_07


def test_a_boolean_definition_is_accepted(owner):
    make_schema(owner.service, "anything")

    response = register(owner, "anything", True)

    assert (response.status_code, response.json()["definition"]) == (201, True)


@pytest.mark.parametrize(
    ("body", "paths"), [({}, ["/definition"]), ({"definition": PERSON, "version": 7}, ["/version"])]
)
def test_a_missing_definition_or_an_unknown_field_is_a_422(owner, body, paths):
    schema = make_schema(owner.service, "people")

    response = owner.post(versions_url("people"), body, format="json")

    assert error_paths(assert_problem(response, 422, "validation_failed")) == paths
    assert version_numbers(schema) == []


def test_registering_for_an_unknown_schema_is_a_404(owner):
    assert_problem(register(owner, "nobody", PERSON), 404, "schema_not_found")
    assert not SchemaVersion.objects.exists()


# --- compatibility modes ---------------------------------------------------------------------------

WIDEN = (obj({"n": INTEGER}), obj({"n": NUMBER}))  # integer -> number: backward only
NARROW = (obj({"n": NUMBER}), obj({"n": INTEGER}))  # number -> integer: forward only
RETYPE = (obj({"n": INTEGER}), obj({"n": STRING}))  # neither
RETITLE = (obj({"n": INTEGER}), obj({"n": INTEGER}, title="renamed"))  # both
CLOSED_ADD_OPTIONAL = (
    obj({"a": STRING}, ["a"], closed=True),
    obj({"a": STRING, "b": INTEGER}, ["a"], closed=True),
)
CLOSED_ADD_REQUIRED = (
    obj({"a": STRING}, ["a"], closed=True),
    obj({"a": STRING, "b": INTEGER}, ["a", "b"], closed=True),
)
OPEN_ADD_OPTIONAL = (obj({"a": STRING}, ["a"]), obj({"a": STRING, "b": INTEGER}, ["a"]))

BACKWARD_NARROW = {
    "path": "/properties/n/type",
    "words": ["version 1", "accepts number values", "new one rejects"],
}
FORWARD_WIDEN = {"path": "/properties/n", "words": ["new schema accepts number values", "version 1"]}
ADDED_REQUIRED = {"path": "/required", "words": ["requires property 'b'", "version 1"]}
OPEN_ADDED = {"path": "/properties/b", "words": ["Property 'b'", "open", "additional properties"]}
CLOSED_ADDED = {"path": "/properties/b", "words": ["version 1 schema accepts nothing"]}


@pytest.mark.parametrize(
    ("mode", "change", "expected"),
    [
        ("BACKWARD", WIDEN, []),
        ("BACKWARD", NARROW, [BACKWARD_NARROW]),
        ("BACKWARD", RETITLE, []),
        ("BACKWARD", CLOSED_ADD_OPTIONAL, []),
        ("BACKWARD", CLOSED_ADD_REQUIRED, [ADDED_REQUIRED]),
        ("BACKWARD", OPEN_ADD_OPTIONAL, [OPEN_ADDED]),
        ("FORWARD", NARROW, []),
        ("FORWARD", WIDEN, [FORWARD_WIDEN]),
        ("FORWARD", RETITLE, []),
        ("FORWARD", OPEN_ADD_OPTIONAL, []),
        ("FORWARD", CLOSED_ADD_OPTIONAL, [CLOSED_ADDED]),
        ("FULL", RETITLE, []),
        ("FULL", WIDEN, [FORWARD_WIDEN]),
        ("FULL", NARROW, [BACKWARD_NARROW]),
        ("FULL", CLOSED_ADD_REQUIRED, [ADDED_REQUIRED, CLOSED_ADDED]),
        ("NONE", NARROW, []),
        ("NONE", WIDEN, []),
        ("NONE", RETYPE, []),
        ("NONE", CLOSED_ADD_REQUIRED, []),
    ],
)
def test_a_new_version_is_checked_against_the_latest_under_the_schema_mode(owner, mode, change, expected):
    old, new = change
    schema = make_schema(owner.service, "people", old, compatibility=mode)
    before = registry_state(schema)

    response = register(owner, "people", new)

    if not expected:
        assert (response.status_code, response.json()["version"]) == (201, 2), response.content
        assert version_numbers(schema) == [1, 2]
        return
    body = assert_problem(response, 409, "incompatible_schema")
    assert mode in body["detail"]
    assert [error["path"] for error in body["errors"]] == [e["path"] for e in expected]
    for error, wanted in zip(body["errors"], expected, strict=True):
        assert set(error) == {"path", "message"}
        for words in wanted["words"]:
            assert words in error["message"], error
    assert registry_state(schema) == before


@pytest.mark.parametrize(
    ("mode", "history", "new"),
    [
        # each history was registered under NONE; the new definition matches the latest version only
        ("BACKWARD", [obj({"n": NUMBER}), obj({"n": INTEGER})], obj({"n": INTEGER}, title="3")),
        ("FORWARD", [obj({"n": INTEGER}), obj({"n": NUMBER})], obj({"n": NUMBER}, title="3")),
        ("FULL", [obj({"n": NUMBER}), obj({"n": INTEGER})], obj({"n": INTEGER}, title="3")),
    ],
)
def test_transitive_modes_check_every_earlier_version_and_plain_ones_only_the_latest(
    owner, mode, history, new
):
    plain = make_schema(owner.service, "plain", *history, compatibility="NONE")
    transitive = make_schema(owner.service, "transitive", *history, compatibility="NONE")
    owner.patch(schema_url("plain"), {"compatibility": mode}, format="json")
    owner.patch(schema_url("transitive"), {"compatibility": f"{mode}_TRANSITIVE"}, format="json")
    before = registry_state(transitive)

    accepted = register(owner, "plain", new)
    refused = register(owner, "transitive", new)

    assert (accepted.status_code, accepted.json()["version"]) == (201, 3), accepted.content
    assert version_numbers(plain) == [1, 2, 3]
    body = assert_problem(refused, 409, "incompatible_schema")
    assert body["errors"]
    assert all("version 1" in error["message"] for error in body["errors"]), body["errors"]
    assert not any("version 2" in error["message"] for error in body["errors"]), body["errors"]
    assert registry_state(transitive) == before


def test_changing_the_compatibility_via_patch_applies_to_the_next_registration(owner):
    old, new = NARROW
    schema = make_schema(owner.service, "people", old)

    refused = register(owner, "people", new)
    patched = owner.patch(schema_url("people"), {"compatibility": "NONE"}, format="json")
    accepted = register(owner, "people", new)
    owner.patch(schema_url("people"), {"compatibility": "BACKWARD"}, format="json")
    refused_again = register(owner, "people", obj({"n": {"type": "integer", "minimum": 0}}))

    assert_problem(refused, 409, "incompatible_schema")
    assert patched.status_code == 200
    assert (accepted.status_code, accepted.json()["version"]) == (201, 2)
    body = assert_problem(refused_again, 409, "incompatible_schema")
    assert error_paths(body) == ["/properties/n/minimum"]
    assert version_numbers(schema) == [1, 2]


# --- stored records --------------------------------------------------------------------------------


def test_a_version_that_stored_records_would_fail_is_a_409_and_registers_nothing(owner, writer):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}), compatibility="FORWARD")
    items = make_collection(
        owner.service, "items", schema, {"a": {"n": 1}, "b": {"n": 1.5}, "c": {"n": 2}, "d": {"n": 2.5}}
    )
    more = make_collection(owner.service, "more", schema, {"x": {"n": 0.5}})
    loose = make_collection(owner.service, "loose", None, {"y": {"n": 0.5}})  # unbound: not checked
    before = registry_state(schema), db_state(items), db_state(more), stored(items), stored(more)

    response = register(owner, "people", obj({"n": INTEGER}))

    body = assert_problem(response, 409, "invalid_records")
    assert body["count"] == 3
    assert body["invalid_records"] == {
        "items": {"count": 2, "sample_keys": ["b", "d"]},
        "more": {"count": 1, "sample_keys": ["x"]},
    }
    assert "nothing was registered" in body["detail"]
    assert (registry_state(schema), db_state(items), db_state(more), stored(items), stored(more)) == before
    assert version_numbers(schema) == [1]
    assert stored(loose) == {"y": (1, {"n": 0.5}, None)}


def test_a_version_that_every_stored_record_satisfies_is_registered(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}), compatibility="FORWARD")
    make_collection(owner.service, "items", schema, {"a": {"n": 1}, "b": {"n": 2}})

    response = register(owner, "people", obj({"n": INTEGER}))

    assert (response.status_code, response.json()["version"]) == (201, 2)
    assert version_numbers(schema) == [1, 2]


def test_sample_keys_are_the_first_ten_invalid_keys(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}), compatibility="NONE")
    records = {f"k{i:02d}": {"n": i + 0.5} for i in range(12)}
    make_collection(owner.service, "items", schema, {**records, "valid": {"n": 3}})

    response = register(owner, "people", obj({"n": INTEGER}))

    body = assert_problem(response, 409, "invalid_records")
    assert body["count"] == 12
    assert body["invalid_records"] == {"items": {"count": 12, "sample_keys": sorted(records)[:10]}}
    assert version_numbers(schema) == [1]


def test_an_incompatible_definition_is_refused_as_incompatible_before_records_are_counted(owner):
    schema = make_schema(owner.service, "people", obj({"n": NUMBER}))
    make_collection(owner.service, "items", schema, {"b": {"n": 1.5}})

    response = register(owner, "people", obj({"n": INTEGER}))

    assert_problem(response, 409, "incompatible_schema")
    assert version_numbers(schema) == [1]


# --- reading versions ----------------------------------------------------------------------------


def test_any_authenticated_caller_lists_the_versions_in_order(owner, outsider):
    definitions = [obj({"n": INTEGER}), obj({"n": NUMBER}), obj({"n": NUMBER}, title="3")]
    make_schema(owner.service, "people", *definitions)

    response = outsider.get(versions_url("people"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is None
    assert [(v["schema"], v["version"], v["definition"], v["fingerprint"]) for v in body["results"]] == [
        ("people", n, d, fingerprint(d)) for n, d in enumerate(definitions, start=1)
    ]
    assert {v["created_by"] for v in body["results"]} == {"command:tests"}


def test_the_version_list_pages_with_a_cursor(owner):
    make_schema(owner.service, "people", *[obj({"n": INTEGER}, title=str(i)) for i in range(5)])

    first = owner.get(versions_url("people"), {"limit": 2})
    second = owner.get(first.json()["next"])
    third = owner.get(second.json()["next"])

    assert [v["version"] for v in first.json()["results"]] == [1, 2]
    assert [v["version"] for v in second.json()["results"]] == [3, 4]
    assert [v["version"] for v in third.json()["results"]] == [5]
    assert third.json()["next"] is None


def test_a_schema_without_versions_lists_none(owner):
    make_schema(owner.service, "people")

    assert owner.get(versions_url("people")).json() == {"results": [], "next": None}


def test_listing_versions_of_an_unknown_schema_is_a_404(owner):
    assert_problem(owner.get(versions_url("nobody")), 404, "schema_not_found")


def test_a_version_is_read_by_number_and_the_latest_by_name(owner, reader):
    definitions = [obj({"n": INTEGER}), obj({"n": NUMBER}), obj({"n": NUMBER}, title="3")]
    make_schema(owner.service, "people", *definitions)

    second = reader.get(version_url("people", 2))
    latest = reader.get(version_url("people", "latest"))

    assert second.status_code == 200, second.content
    assert (second.json()["version"], second.json()["definition"]) == (2, definitions[1])
    assert latest.status_code == 200, latest.content
    assert (latest.json()["version"], latest.json()["definition"]) == (3, definitions[2])
    assert latest.json()["fingerprint"] == fingerprint(definitions[2])


@pytest.mark.parametrize("version", ["4", "0", "abc", "-1", "LATEST"])
def test_an_unknown_version_is_a_404(owner, version):
    make_schema(owner.service, "people", *[obj({"n": INTEGER}, title=str(i)) for i in range(3)])

    assert_problem(owner.get(version_url("people", version)), 404, "schema_version_not_found")


def test_the_latest_version_of_a_schema_without_versions_is_a_404(owner):
    make_schema(owner.service, "people")

    assert_problem(owner.get(version_url("people", "latest")), 404, "schema_version_not_found")


def test_a_version_of_an_unknown_schema_is_a_404(owner):
    assert_problem(owner.get(version_url("nobody", 1)), 404, "schema_not_found")


def test_reading_versions_needs_authentication(owner):
    make_schema(owner.service, "people", PERSON)

    assert_problem(APIClient().get(versions_url("people")), 401)
    assert_problem(APIClient().get(version_url("people", 1)), 401)


# --- who may register ----------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["reader", "writer", "outsider"])
def test_other_services_get_403_and_nothing_is_registered(request, owner, caller):
    schema = make_schema(owner.service, "people", PERSON)
    client = request.getfixturevalue(caller)

    response = register(client, "people", {**PERSON, "title": "v2"})

    assert_problem(response, 403, "forbidden")
    assert version_numbers(schema) == [1]


def test_an_identical_definition_from_another_service_is_still_a_403(owner, outsider):
    make_schema(owner.service, "people", PERSON)

    assert_problem(register(outsider, "people", PERSON), 403, "forbidden")


def test_an_operator_registers_a_version_of_any_schema(operator, owner):
    schema = make_schema(owner.service, "people", PERSON)

    response = register(operator, "people", {**PERSON, "title": "v2"})

    assert response.status_code == 201, response.content
    assert response.json()["created_by"] == "operator:alice"
    assert version_numbers(schema) == [1, 2]


def test_registering_needs_authentication(owner):
    schema = make_schema(owner.service, "people")

    assert_problem(APIClient().post(versions_url("people"), {"definition": PERSON}, format="json"), 401)
    assert version_numbers(schema) == []


# --- concurrency (PostgreSQL: two real connections, the waiting one observed in pg_stat_activity) ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_record_write_waits_for_a_concurrent_registration_and_is_validated_against_the_new_version(
    live_server, owner
):
    """Registration locks the bound collections; a write waiting on that lock must then validate
    against the version just registered, not the one that was latest when it started."""
    schema = make_schema(owner.service, "measure", obj({"n": NUMBER}), compatibility="FORWARD")
    collection = make_collection(owner.service, "measures", schema, {"a": {"n": 1}})

    with HeldTransaction(
        lambda: services.schema_version_register(
            schema=schema, definition=obj({"n": INTEGER}), actor=TEST_ACTOR
        )
    ) as registration:
        write = Request(
            live_server.url, owner.token, "POST", records_url("measures"), {"key": "b", "data": {"n": 1.5}}
        )
        wait_until_blocked("FOR SHARE")
        assert write.outcome == {}

    assert registration.errors == []
    outcome = write.answer()
    assert outcome.get("status") == 422, outcome
    assert (outcome["body"]["code"], outcome["body"]["schema_version"]) == ("schema_validation_failed", 2)
    assert stored(collection) == {"a": (1, {"n": 1}, None)}  # written before the binding
