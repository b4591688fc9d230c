"""Unit tests of the compatibility checker (schemas/compat.py): modes, keyword families, definitions.

Every verdict is checked twice: the checker's answer (path into the new schema, a readable message)
and, for "compatible", the validators themselves on hand-made documents: each document the old schema
accepts must be accepted by the new one, by Python's jsonschema (the reference) and by jsonschema-rs
(what Nucleus validates records with). An "incompatible" case names a document that breaks it where
one exists. Tests marked as regressions pin counterexamples to verdicts that used to be unsound.
"""

import jsonschema_rs
import pytest
from jsonschema import Draft7Validator

from schemas.compat import (
    MODES,
    SchemaProblem,
    canonical,
    check_definition,
    compatibility_errors,
    subschema_errors,
    validator_class,
)
from tests.schemas.schema_support import nested_any_of

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
STRING = {"type": "string"}
INTEGER = {"type": "integer"}


# --- helpers -----------------------------------------------------------------------------------------


def _python(schema):
    return validator_class(schema)(schema)


def _rust(schema):
    cls = (
        jsonschema_rs.Draft7Validator
        if validator_class(schema) is Draft7Validator
        else jsonschema_rs.Draft202012Validator
    )
    return cls(schema, validate_formats=False)


def valid(schema, document, engine="python") -> bool:
    return (_python if engine == "python" else _rust)(schema).is_valid(document)


def errors(mode, new, *previous):
    return [error.as_dict() for error in compatibility_errors(mode, new, list(previous))]


def assert_sentence(message: str, *words: str):
    first = message.split()[0] if message.split() else ""
    assert first in ("true", "false", "null") or not first[:1].islower(), message  # may open on a value
    assert message.endswith("."), message
    assert len(message.split()) >= 6, message
    for word in words:
        assert word.lower() in message.lower(), (word, message)


def assert_compatible(old, new, documents, mode="BACKWARD"):
    """The checker says compatible, and both validators agree on every document given: what the
    narrow schema accepts (old for BACKWARD, new for FORWARD, both ways for FULL), the wide accepts."""
    assert errors(mode, new, old) == []
    pairs = []
    if mode.startswith(("BACKWARD", "FULL")):
        pairs.append((old, new))
    if mode.startswith(("FORWARD", "FULL")):
        pairs.append((new, old))
    for narrow, wide in pairs:
        assert any(valid(narrow, document) for document in documents), "no document exercises it"
        for document in documents:
            for engine in ("python", "rust"):
                if valid(narrow, document, engine):
                    assert valid(wide, document, engine), (engine, document)


def assert_incompatible(old, new, path, *words, breaks=None, mode="BACKWARD"):
    """The checker reports an error at path whose message has words; breaks is a document that
    shows it (valid under the narrow schema, invalid under the wide one)."""
    found = errors(mode, new, old)
    assert found, "judged compatible"
    at_path = [error for error in found if error["path"] == path]
    assert at_path, (path, found)
    assert_sentence(at_path[0]["message"], *words)
    if breaks is not None:
        narrow, wide = (old, new) if mode.startswith(("BACKWARD", "FULL")) else (new, old)
        assert valid(narrow, breaks) and not valid(wide, breaks), breaks
    return found


def obj(properties=None, **keywords):
    schema = {"type": "object", **keywords}
    if properties is not None:
        schema["properties"] = properties
    return schema


# --- modes -------------------------------------------------------------------------------------------

NAME_ONLY = obj({"name": STRING})
NAME_REQUIRED = obj({"name": STRING}, required=["name"])


def test_none_accepts_any_change():
    assert errors("NONE", {"type": "integer"}, {"type": "string"}) == []
    assert errors("NONE", NAME_REQUIRED, NAME_ONLY) == []


def test_backward_compatible_when_the_new_version_accepts_more():
    assert_compatible(NAME_REQUIRED, NAME_ONLY, [{"name": "a"}, {}, {"name": 1}])


def test_backward_incompatible_when_a_property_becomes_required():
    found = assert_incompatible(NAME_ONLY, NAME_REQUIRED, "/required", "requires", "'name'", breaks={})
    assert found == [
        {
            "path": "/required",
            "message": "The new schema requires property 'name', which documents valid under the version "
            "1 schema may lack.",
        }
    ]


def test_backward_checks_only_the_latest_version():
    v1 = obj({"a": STRING})
    v2 = obj({"a": {"type": "string", "maxLength": 3}})
    new = obj({"a": {"type": "string", "maxLength": 5}})
    assert errors("BACKWARD", new, v1, v2) == []
    for document in ({"a": "abc"}, {}, {"a": 1}):
        if valid(v2, document):
            assert valid(new, document)


def test_backward_transitive_checks_every_version():
    v1 = obj({"a": STRING})
    v2 = obj({"a": {"type": "string", "maxLength": 3}})
    new = obj({"a": {"type": "string", "maxLength": 5}})
    found = errors("BACKWARD_TRANSITIVE", new, v1, v2)
    assert found == [
        {
            "path": "/properties/a/maxLength",
            "message": "The new schema allows at most 5 characters; the version 1 one allows longer strings.",
        }
    ]
    assert valid(v1, {"a": "abcdef"}) and not valid(new, {"a": "abcdef"})
    assert errors("BACKWARD_TRANSITIVE", obj({"a": STRING}), v1, v2) == []


def test_forward_compatible_when_the_new_version_accepts_less():
    assert_compatible(NAME_ONLY, NAME_REQUIRED, [{"name": "a"}, {}, {"name": 1}], mode="FORWARD")


def test_forward_incompatible_when_the_new_version_accepts_more_and_points_into_the_new_schema():
    old = obj({"a": STRING})
    new = obj({"a": {"type": ["string", "integer"]}})
    assert_incompatible(old, new, "/properties/a", "integer", "rejects", breaks={"a": 1}, mode="FORWARD")
    assert errors("BACKWARD", new, old) == []


def test_forward_transitive_checks_every_version():
    v1 = obj({"a": {"type": "string", "maxLength": 3}})
    v2 = obj({"a": STRING})
    new = obj({"a": {"type": "string", "maxLength": 5}})
    assert errors("FORWARD", new, v1, v2) == []
    found = errors("FORWARD_TRANSITIVE", new, v1, v2)
    assert [error["path"] for error in found] == ["/properties/a"]
    assert_sentence(found[0]["message"], "version 1", "at most 3 characters")
    assert valid(new, {"a": "abcde"}) and not valid(v1, {"a": "abcde"})
    assert errors("FORWARD_TRANSITIVE", obj({"a": {"type": "string", "maxLength": 2}}), v1, v2) == []


def test_full_compatible_for_an_equivalent_rewrite():
    old = {"title": "Colour", "enum": ["red", "green"]}
    new = {"description": "A colour", "enum": ["green", "red"]}
    assert_compatible(old, new, ["red", "green", "blue", 1], mode="FULL")


def test_full_reports_the_forward_half_of_a_widening():
    old = {"enum": ["red", "green"]}
    new = {"enum": ["red", "green", "blue"]}
    assert errors("BACKWARD", new, old) == []
    found = assert_incompatible(old, new, "", '"blue"', "version 1", mode="FULL")
    assert len(found) == 1
    assert valid(new, "blue") and not valid(old, "blue")


def test_full_transitive_checks_every_version():
    v1 = {"type": "integer"}
    v2 = {"type": "integer", "minimum": 0}
    new = {"type": "integer", "exclusiveMinimum": -1}  # the same integers as v2
    assert errors("FULL", new, v1, v2) == []
    found = errors("FULL_TRANSITIVE", new, v1, v2)
    assert [error["path"] for error in found] == ["/exclusiveMinimum"]
    assert_sentence(found[0]["message"], "lower bound", "version 1")
    assert valid(v1, -5) and not valid(new, -5)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="SIDEWAYS"):
        compatibility_errors("SIDEWAYS", {}, [{}])
    assert set(MODES) == {
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    }


@pytest.mark.parametrize("mode", MODES)
def test_a_first_version_is_always_compatible(mode):
    assert compatibility_errors(mode, {"type": "string"}, []) == []


# --- open and closed content models --------------------------------------------------------------------


def test_adding_a_property_to_an_open_object_is_not_backward_compatible():
    old = obj({"a": STRING})
    new = obj({"a": STRING, "b": INTEGER})
    assert_incompatible(old, new, "/properties/b", "'b'", "open", breaks={"a": "x", "b": "text"})


def test_adding_a_property_to_a_closed_object_is_backward_compatible():
    old = obj({"a": STRING}, additionalProperties=False)
    new = obj({"a": STRING, "b": INTEGER}, additionalProperties=False)
    assert_compatible(old, new, [{"a": "x"}, {}, {"a": "x", "b": 1}, {"b": "x"}])


def test_adding_an_unconstrained_property_to_an_open_object_is_compatible():
    old = obj({"a": STRING})
    new = obj({"a": STRING, "b": {"description": "anything"}})
    assert_compatible(old, new, [{"a": "x"}, {"b": [1]}, {"c": None}])


def test_closing_an_open_object_is_not_backward_compatible():
    old = obj({"a": STRING})
    new = obj({"a": STRING}, additionalProperties=False)
    assert_incompatible(old, new, "/additionalProperties", "additional properties", breaks={"z": 1})


def test_opening_a_closed_object_is_backward_but_not_forward_compatible():
    old = obj({"a": STRING}, additionalProperties=False)
    new = obj({"a": STRING})
    assert_compatible(old, new, [{"a": "x"}, {}, {"z": 1}])
    assert_incompatible(old, new, "/additionalProperties", "additional properties", mode="FORWARD")


def test_additional_properties_schema_widened_and_narrowed():
    old = obj({"a": STRING}, additionalProperties=STRING)
    new = obj({"a": STRING}, additionalProperties={"type": ["string", "null"]})
    assert_compatible(old, new, [{"x": "1"}, {"x": None}, {"x": 1}, {"a": "x", "y": "z"}])
    assert_incompatible(new, old, "/additionalProperties/type", "null", "rejects", breaks={"x": None})


def test_a_new_property_must_fit_the_old_additional_properties_schema():
    old = obj({}, additionalProperties=STRING)
    assert_compatible(old, obj({"b": STRING}, additionalProperties=STRING), [{"b": "x"}, {"c": "y"}])
    assert_incompatible(
        old,
        obj({"b": {"type": "string", "maxLength": 2}}, additionalProperties=STRING),
        "/properties/b/maxLength",
        "at most 2 characters",
        breaks={"b": "long"},
    )


def test_pattern_properties_widened_and_narrowed():
    old = obj({}, patternProperties={"^x-": INTEGER}, additionalProperties=False)
    new = obj({}, patternProperties={"^x-": {"type": "number"}}, additionalProperties=False)
    assert_compatible(old, new, [{"x-a": 1}, {"x-a": 1.5}, {"y": 1}, {}])
    assert_incompatible(new, old, "/patternProperties/^x-/type", "number", "rejects", breaks={"x-a": 1.5})


def test_a_property_name_matching_a_pattern_takes_the_pattern_schema():
    old = obj({}, patternProperties={"^x-": INTEGER}, additionalProperties=False)
    assert_compatible(
        old,
        obj({"x-count": {"type": "number"}}, patternProperties={"^x-": INTEGER}, additionalProperties=False),
        [{"x-count": 3}, {"x-other": 1}, {}],
    )
    # without the pattern, other x- names are no longer allowed
    assert_incompatible(
        old,
        obj({"x-count": {"type": "number"}}, additionalProperties=False),
        "/additionalProperties",
        "accepts nothing",
        breaks={"x-other": 1},
    )
    assert_incompatible(
        old,
        obj({"x-count": STRING}, patternProperties={"^x-": INTEGER}, additionalProperties=False),
        "/properties/x-count/type",
        "integer",
        breaks={"x-count": 3},
    )


def test_a_new_pattern_on_an_open_object_cannot_be_proven():
    old = obj({"a": STRING})
    new = obj({"a": STRING}, patternProperties={"^x-": INTEGER})
    assert_incompatible(
        old, new, "/patternProperties", "patternProperties", "cannot prove", breaks={"x-a": "s"}
    )


# --- required ------------------------------------------------------------------------------------------


def test_removing_a_required_property_is_backward_compatible():
    old = obj({"a": STRING, "b": STRING}, required=["a", "b"])
    new = obj({"a": STRING, "b": STRING}, required=["a"])
    assert_compatible(old, new, [{"a": "x", "b": "y"}, {"a": "x"}, {}])


def test_adding_a_required_property_is_not_backward_compatible_but_forward():
    old = obj({"a": STRING, "b": STRING}, required=["a"])
    new = obj({"a": STRING, "b": STRING}, required=["a", "b"])
    assert_incompatible(old, new, "/required", "requires", "'b'", breaks={"a": "x"})
    assert_compatible(old, new, [{"a": "x", "b": "y"}, {"a": "x"}], mode="FORWARD")


# --- type ----------------------------------------------------------------------------------------------


def test_integer_is_a_subset_of_number():
    assert_compatible(INTEGER, {"type": "number"}, [0, 1, -3, 2.0, 1.5, "1"])
    assert_incompatible({"type": "number"}, INTEGER, "/type", "number", "rejects", breaks=1.5)


def test_type_arrays():
    nullable = {"type": ["string", "null"]}
    assert_compatible(STRING, nullable, ["a", "", None, 1])
    assert_compatible({"type": ["integer", "string"]}, {"type": ["number", "string", "null"]}, [1, "a", 1.5])
    assert_incompatible(nullable, STRING, "/type", "null", "rejects", breaks=None)


def test_untyped_old_schema_against_a_typed_new_one():
    assert_incompatible({}, STRING, "/type", "any type", breaks=1)


# --- enum and const ------------------------------------------------------------------------------------


def test_enum_values_added_and_removed():
    old = {"enum": ["a", "b"]}
    assert_compatible(old, {"enum": ["a", "b", "c"]}, ["a", "b", "c", "d"])
    assert_incompatible(old, {"enum": ["a"]}, "", '"b"', "valid under the version 1 schema", breaks="b")


def test_const_and_enum():
    assert_compatible({"const": "a"}, {"enum": ["a", "b"]}, ["a", "b"])
    assert_compatible({"const": 3}, {"type": "integer", "minimum": 3}, [3, 4])
    assert_incompatible({"enum": ["a", "b"]}, {"const": "a"}, "", '"b"', breaks="b")


def test_an_enum_over_a_whole_small_type_is_equivalent_to_the_type():
    assert_compatible({"type": "boolean"}, {"enum": [True, False]}, [True, False, 0])
    assert_compatible({"type": ["boolean", "null"]}, {"enum": [None, False, True]}, [True, None])
    assert_incompatible({"type": "boolean"}, {"const": True}, "", "false", breaks=False)


def test_an_enum_over_an_open_type_is_incompatible():
    assert_incompatible(STRING, {"enum": ["a", "b"]}, "/enum", "allows only", '"a"', breaks="c")


# --- numbers -------------------------------------------------------------------------------------------


def test_minimum_and_maximum():
    old = {"type": "number", "minimum": 0, "maximum": 10}
    assert_compatible(old, {"type": "number", "minimum": -1, "maximum": 10}, [0, 10, 5.5, -1, 11])
    assert_incompatible(
        old, {"type": "number", "minimum": 1, "maximum": 10}, "/minimum", "lower bound", breaks=0
    )
    assert_incompatible(
        old, {"type": "number", "minimum": 0, "maximum": 9}, "/maximum", "upper bound", breaks=10
    )
    assert_incompatible({"type": "number"}, {"type": "number", "maximum": 9}, "/maximum", "upper", breaks=10)


def test_exclusive_bounds():
    inclusive = {"type": "number", "minimum": 0}
    exclusive = {"type": "number", "exclusiveMinimum": 0}
    assert_compatible(exclusive, inclusive, [0.001, 1, 0])
    assert_incompatible(inclusive, exclusive, "/exclusiveMinimum", "lower bound", breaks=0)
    below = {"type": "number", "exclusiveMaximum": 1}
    assert_compatible(below, {"type": "number", "maximum": 1}, [0.999, 1])
    assert_incompatible({"type": "number", "maximum": 1}, below, "/exclusiveMaximum", "upper bound", breaks=1)


def test_integer_bounds_round_to_integers():
    positive = {"type": "integer", "exclusiveMinimum": 0}
    at_least_one = {"type": "integer", "minimum": 1}
    assert_compatible(positive, at_least_one, [1, 2, 0, -1])
    assert_compatible(at_least_one, positive, [1, 2, 0])
    assert_compatible({"type": "integer", "maximum": 4.5}, {"type": "integer", "exclusiveMaximum": 5}, [4, 5])
    # for numbers the two differ: 0.5 is above 0 but below 1
    assert_incompatible(
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "number", "minimum": 1},
        "/minimum",
        "lower bound",
        breaks=0.5,
    )


def test_multiple_of_integers():
    assert_compatible({"multipleOf": 4}, {"multipleOf": 2}, [4, 8, 12.0, 2, 3])
    assert_incompatible({"multipleOf": 2}, {"multipleOf": 4}, "/multipleOf", "multiples of 4", breaks=2)
    assert_incompatible({"type": "number"}, {"multipleOf": 1}, "/multipleOf", "multiples of 1", breaks=0.5)


def test_multiple_of_an_integer_type():
    assert_compatible(INTEGER, {"type": "integer", "multipleOf": 1}, [1, 0, 7])
    assert_compatible(INTEGER, {"type": "number", "multipleOf": 0.5}, [1, 0, -7, 2**53 + 1, 10**20])
    assert_incompatible(INTEGER, {"multipleOf": 2}, "/multipleOf", "multiples of 2", breaks=1)


def test_multiple_of_binary_fractions():
    assert_compatible({"multipleOf": 0.5}, {"multipleOf": 0.25}, [0.5, 1, 1.5, 2e307, 1.7e308, 0.25])
    assert_compatible({"multipleOf": 0.1}, {"multipleOf": 0.1}, [0.1, 0.3, 1])
    assert_incompatible({"multipleOf": 0.25}, {"multipleOf": 0.5}, "/multipleOf", "0.5", breaks=0.25)


def test_regression_multiple_of_decimal_fractions_is_not_provable():
    """Python's jsonschema divides by a float multipleOf in floating point. 0.2 vs 0.1 used to be
    judged compatible (0.2 / 0.1 = 2 in decimal), but 2e307 / 0.1 overflows and is then checked
    exactly, and the binary 0.1 does not divide it; 0.3 vs 0.1 broke on 0.3 itself."""
    assert_incompatible(
        {"multipleOf": 0.2}, {"multipleOf": 0.1}, "/multipleOf", "multiples of 0.1", breaks=2e307
    )
    assert_incompatible({"multipleOf": 0.3}, {"multipleOf": 0.1}, "/multipleOf", "0.1", breaks=0.3)


def test_regression_multiple_of_large_floats_underflow():
    """5e-324 / 2.0 rounds to 0, so it is a multiple of 2.0 for Python's jsonschema, but not of 1.0."""
    assert_incompatible({"multipleOf": 2.0}, {"multipleOf": 1.0}, "/multipleOf", "1.0", breaks=5e-324)
    assert_incompatible({"multipleOf": 2.0}, {"multipleOf": 1}, "/multipleOf", "1", breaks=5e-324)
    assert_incompatible({"multipleOf": 4.0}, {"multipleOf": 2.0}, "/multipleOf", "2.0", breaks=1e-323)


# --- strings -------------------------------------------------------------------------------------------


def test_string_length_bounds():
    old = {"type": "string", "minLength": 2, "maxLength": 5}
    assert_compatible(old, {"type": "string", "minLength": 1, "maxLength": 8}, ["ab", "abcde", "a", "abcdef"])
    assert_incompatible(
        old, {"type": "string", "minLength": 3, "maxLength": 5}, "/minLength", "at least 3", breaks="ab"
    )
    assert_incompatible(
        old, {"type": "string", "minLength": 2, "maxLength": 4}, "/maxLength", "at most 4", breaks="abcde"
    )


def test_pattern_unchanged_removed_changed_and_added():
    old = {"type": "string", "pattern": "^[a-z]+$"}
    assert_compatible({**old, "maxLength": 100}, old, ["abc", "a", "A"])
    assert_compatible(old, STRING, ["abc", "ABC"])
    assert_incompatible(
        old, {"type": "string", "pattern": "^[a-z0-9]+$"}, "/pattern", "cannot prove", "^[a-z0-9]+$"
    )
    assert_incompatible(STRING, {"type": "string", "pattern": "^a"}, "/pattern", "cannot prove", breaks="b")


# --- arrays --------------------------------------------------------------------------------------------


def test_items_widened_and_narrowed():
    old = {"type": "array", "items": INTEGER}
    assert_compatible(old, {"type": "array", "items": {"type": "number"}}, [[1, 2], [], [1.5]])
    assert_incompatible(old, {"type": "array", "items": STRING}, "/items/type", "integer", breaks=[1])


def test_prefix_items():
    old = {"type": "array", "prefixItems": [STRING], "items": False}
    new = {"type": "array", "prefixItems": [STRING, INTEGER], "items": False}
    assert_compatible(old, new, [["a"], [], ["a", 1], [1]])
    # the old array is open after its first item, so a second prefix item constrains what it allowed
    assert_incompatible(
        {"type": "array", "prefixItems": [STRING]},
        {"type": "array", "prefixItems": [STRING, INTEGER]},
        "/prefixItems/1/type",
        "any type",
        breaks=["a", "b"],
    )
    assert_incompatible(
        old, {"type": "array", "prefixItems": [INTEGER]}, "/prefixItems/0/type", "string", breaks=["a"]
    )


def test_draft07_tuple_items_and_additional_items():
    old = {"$schema": DRAFT_07, "type": "array", "items": [STRING], "additionalItems": False}
    longer = {"$schema": DRAFT_07, "type": "array", "items": [STRING, INTEGER], "additionalItems": False}
    assert_compatible(old, longer, [["a"], [], ["a", 1], [1]])
    open_ = {"$schema": DRAFT_07, "type": "array", "items": [STRING]}
    assert_compatible(old, open_, [["a"], ["a", 1]])
    # pointers use draft-07 spelling: the tuple is `items`, the rest `additionalItems`
    assert_incompatible(open_, old, "/additionalItems", "accepts nothing", breaks=["a", 1])
    assert_incompatible(
        open_,
        {"$schema": DRAFT_07, "type": "array", "items": [INTEGER]},
        "/items/0/type",
        "string",
        breaks=["a"],
    )
    # an object `items` applies to every item in draft-07
    assert_compatible(
        {"$schema": DRAFT_07, "type": "array", "items": INTEGER},
        {"$schema": DRAFT_07, "type": "array", "items": {"type": "number"}, "additionalItems": False},
        [[1, 2, 3], []],
    )


def test_min_and_max_items():
    old = {"type": "array", "minItems": 1, "maxItems": 3}
    assert_compatible(old, {"type": "array", "minItems": 0, "maxItems": 4}, [[1], [1, 2, 3], [], [1] * 4])
    assert_incompatible(
        old, {"type": "array", "minItems": 2, "maxItems": 3}, "/minItems", "at least 2", breaks=[1]
    )
    assert_incompatible(
        old, {"type": "array", "minItems": 1, "maxItems": 2}, "/maxItems", "at most 2", breaks=[1, 2, 3]
    )


def test_unique_items():
    assert_compatible({"type": "array", "uniqueItems": True}, {"type": "array"}, [[1, 2], [1, 1]])
    assert_incompatible(
        {"type": "array"}, {"type": "array", "uniqueItems": True}, "/uniqueItems", "unique", breaks=[1, 1]
    )
    # at most one item: always unique
    assert_compatible(
        {"type": "array", "maxItems": 1}, {"type": "array", "uniqueItems": True}, [[], [1], [1, 1]]
    )


# --- allOf, anyOf, oneOf, not ------------------------------------------------------------------------


def test_all_of():
    base = obj({"a": STRING})
    old = {"allOf": [base, obj({"b": INTEGER}, required=["b"])]}
    flattened = obj({"a": STRING, "b": INTEGER}, required=["b"])
    assert_compatible(old, flattened, [{"b": 1}, {"a": "x", "b": 2}, {"a": 1}])
    assert_compatible(flattened, old, [{"b": 1}, {"a": "x", "b": 2}])
    assert_incompatible(
        base, {"allOf": [base, obj(required=["a"])]}, "/allOf/1/required", "requires", "'a'", breaks={}
    )


def test_all_of_branches_with_their_own_titles_still_merge():
    """Annotations do not change what a schema accepts, so differing titles do not stop the merge."""
    old = {
        "allOf": [
            {"title": "Base", **obj({"id": INTEGER}, required=["id"])},
            {"title": "Named", **obj({"name": STRING})},
        ]
    }
    flattened = obj({"id": INTEGER, "name": STRING}, required=["id"])
    assert_compatible(old, flattened, [{"id": 1}, {"id": 1, "name": "x"}, {"name": "x"}], mode="FULL")
    assert_incompatible(
        old,
        obj({"id": INTEGER, "name": {"type": "string", "maxLength": 1}}, required=["id"]),
        "/properties/name/maxLength",
        "at most 1",
        breaks={"id": 1, "name": "xy"},
    )


def test_any_of():
    old = {"anyOf": [STRING, INTEGER]}
    assert_compatible(STRING, old, ["a", 1, None])
    assert_compatible(old, {"type": ["string", "number"]}, ["a", 1, 1.5])
    assert_compatible(old, {"anyOf": [INTEGER, STRING, {"type": "null"}]}, ["a", 1, None])
    found = assert_incompatible(old, STRING, "/type", "integer", breaks=1)
    assert_sentence(found[0]["message"], "version 1")


TAGGED_CIRCLE = obj({"kind": {"const": "circle"}, "radius": {"type": "number"}}, required=["kind", "radius"])
TAGGED_SQUARE = obj({"kind": {"const": "square"}, "side": {"type": "number"}}, required=["kind", "side"])


def test_one_of_tagged_union_is_provably_disjoint():
    shape = {"oneOf": [TAGGED_CIRCLE, TAGGED_SQUARE]}
    documents = [{"kind": "circle", "radius": 1}, {"kind": "square", "side": 2}, {"kind": "circle"}]
    assert_compatible(TAGGED_CIRCLE, shape, documents)
    triangle = obj({"kind": {"const": "triangle"}, "base": {"type": "number"}}, required=["kind", "base"])
    assert_compatible(shape, {"oneOf": [TAGGED_CIRCLE, TAGGED_SQUARE, triangle]}, documents)
    assert_incompatible(
        shape,
        {"oneOf": [TAGGED_CIRCLE]},
        "/oneOf",
        "exactly one branch",
        breaks={"kind": "square", "side": 2},
    )


def test_one_of_with_overlapping_branches_is_refused():
    old = {"type": "string", "maxLength": 3}
    new = {"oneOf": [STRING, {"type": "string", "maxLength": 5}]}
    assert_incompatible(old, new, "/oneOf", "exactly one branch", "oneOf", breaks="ab")
    # without a const discriminator the branches of a union of objects may overlap as well
    untagged = {"oneOf": [obj({"radius": {"type": "number"}}), obj({"side": {"type": "number"}})]}
    assert_incompatible(obj({"radius": {"type": "number"}}), untagged, "/oneOf", "exactly one", breaks={})


def test_not():
    old = {"enum": ["a", "b"]}
    assert_compatible(old, {"type": "string", "not": {"const": "c"}}, ["a", "b", "c"])
    assert_compatible(INTEGER, {"not": STRING}, [1, "a"])
    assert_incompatible(STRING, {"type": "string", "not": {"const": "c"}}, "/not", "never match", breaks="c")


# --- nested objects and references -----------------------------------------------------------------


def test_nested_objects_point_to_the_nested_path():
    old = obj({"a": obj({"b": INTEGER})})
    assert_compatible(old, obj({"a": obj({"b": {"type": "number"}})}), [{"a": {"b": 1}}, {"a": {}}, {}])
    assert_incompatible(
        old,
        obj({"a": obj({"b": STRING})}),
        "/properties/a/properties/b/type",
        "integer",
        breaks={"a": {"b": 1}},
    )
    assert_incompatible(
        old,
        obj({"a": obj({"b": INTEGER}, required=["b"])}),
        "/properties/a/required",
        "'b'",
        breaks={"a": {}},
    )


def test_local_refs_and_defs():
    inline = obj({"price": {"type": "number", "minimum": 0}})
    via_defs = {
        "$defs": {"money": {"type": "number", "minimum": 0}},
        **obj({"price": {"$ref": "#/$defs/money"}}),
    }
    assert_compatible(inline, via_defs, [{"price": 1}, {"price": -1}])
    assert_compatible(via_defs, inline, [{"price": 1}])
    narrower = {
        "$defs": {"money": {"type": "number", "minimum": 1}},
        **obj({"price": {"$ref": "#/$defs/money"}}),
    }
    assert_incompatible(via_defs, narrower, "/$defs/money/minimum", "lower bound", breaks={"price": 0})


def test_ref_with_sibling_keywords_in_2020_12():
    old = {"$defs": {"s": STRING}, "$ref": "#/$defs/s"}
    new = {"$defs": {"s": STRING}, "$ref": "#/$defs/s", "maxLength": 3}
    assert_incompatible(old, new, "/maxLength", "at most 3", breaks="abcd")
    assert_compatible(new, old, ["abc", "abcd"])


def test_draft07_ignores_the_siblings_of_ref():
    defs = {"s": STRING}
    old = {"$schema": DRAFT_07, "definitions": defs, "$ref": "#/definitions/s", "maxLength": 3}
    new = {"definitions": defs, "$ref": "#/definitions/s", "maxLength": 3}  # 2020-12: maxLength applies
    assert_incompatible(old, new, "/maxLength", "at most 3", breaks="abcd")
    assert_compatible(new, old, ["abc", "abcd", 1])


def linked_list(value):
    node = obj(
        {"value": value, "next": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/node"}]}}, required=["value"]
    )
    return {"$defs": {"node": node}, "$ref": "#/$defs/node"}


LISTS = [
    {"value": 1, "next": None},
    {"value": 1, "next": {"value": 2, "next": {"value": 3}}},
    {"value": 1, "next": {"value": 2.5}},
    {"value": "x"},
]


def test_recursive_schema_widened():
    old, new = linked_list(INTEGER), linked_list({"type": "number"})
    assert_compatible(old, new, LISTS)
    assert_incompatible(
        old,
        new,
        "/$defs/node/properties/value",
        "number",
        "rejects",
        breaks={"value": 1, "next": {"value": 2.5}},
        mode="FORWARD",
    )


def test_recursive_schema_narrowed():
    old, new = linked_list({"type": "number"}), linked_list(INTEGER)
    assert_compatible(old, new, LISTS, mode="FORWARD")
    assert_incompatible(
        old, new, "/$defs/node/properties/value/type", "number", breaks={"value": 1, "next": {"value": 2.5}}
    )


# --- keywords the checker does not analyse ----------------------------------------------------------


UNDECIDABLE = {
    "if": {
        "if": {"properties": {"kind": {"const": "a"}}},
        "then": {"required": ["a"]},
        "else": {"required": ["b"]},
    },
    "dependentRequired": {"dependentRequired": {"card": ["billing"]}},
    "propertyNames": {"propertyNames": {"maxLength": 3}},
    "contains": {"contains": {"const": "x"}},
}
UNDECIDABLE_BREAKS = {
    "if": {"kind": "a"},
    "dependentRequired": {"card": 1},
    "propertyNames": {"long": 1},
    "contains": ["y"],
}


@pytest.mark.parametrize("keyword", sorted(UNDECIDABLE))
def test_an_undecidable_keyword_added_cannot_be_proven(keyword):
    kind = "array" if keyword == "contains" else "object"
    old = {"type": kind}
    new = {"type": kind, **UNDECIDABLE[keyword]}
    assert_incompatible(
        old, new, f"/{keyword}", f"'{keyword}'", "cannot prove", breaks=UNDECIDABLE_BREAKS[keyword]
    )


@pytest.mark.parametrize("keyword", sorted(UNDECIDABLE))
def test_an_undecidable_keyword_unchanged_is_compatible(keyword):
    if keyword == "contains":
        old = {"type": "array", "maxItems": 3, **UNDECIDABLE[keyword]}
        new = {"type": "array", "maxItems": 4, **UNDECIDABLE[keyword]}
        documents = [["x"], ["x", "y", "z"], ["y"]]
    else:
        old = obj({"n": INTEGER}, **UNDECIDABLE[keyword])
        new = obj({"n": {"type": "number"}}, **UNDECIDABLE[keyword])
        documents = [{"n": 1, "kind": "a", "a": 1}, {"b": 1}, {"card": 1, "billing": 2}, {"abc": 1}, {"n": 1}]
    assert_compatible(old, new, documents)


def test_an_undecidable_keyword_changed_cannot_be_proven():
    old = obj(dependentRequired={"card": ["billing"]})
    new = obj(dependentRequired={"card": ["billing", "name"]})
    assert_incompatible(old, new, "/dependentRequired", "cannot prove", breaks={"card": 1, "billing": 2})


def test_unevaluated_properties():
    closed = obj({"a": STRING}, unevaluatedProperties=False)
    assert_compatible(closed, dict(closed), [{"a": "x"}, {"b": 1}])
    assert_incompatible(obj({"a": STRING}), closed, "/unevaluatedProperties", "cannot prove", breaks={"b": 1})
    # unchanged, but its meaning depends on the properties next to it, which changed
    old = {"allOf": [obj({"a": STRING})], "unevaluatedProperties": False}
    new = {"allOf": [obj({"a": STRING, "b": STRING})], "unevaluatedProperties": False}
    assert_incompatible(new, old, "/unevaluatedProperties", "cannot prove", breaks={"b": "x"})


# --- regressions: verdicts that used to be unsound -------------------------------------------------------


def test_regression_if_and_then_from_different_all_of_branches_are_not_merged():
    """`then` without `if` does nothing, so the old schema accepts everything; merging the branches of
    its allOf used to make it look like the new one."""
    old = {"allOf": [{"if": STRING}, {"then": {"minLength": 3}}]}
    new = {"if": STRING, "then": {"minLength": 3}}
    assert_incompatible(old, new, "", "cannot prove", "allOf", breaks="a")


def test_regression_contains_bounds_from_different_branches_are_not_merged():
    old = {"type": "array", "allOf": [{"contains": STRING}, {"maxContains": 1}]}
    new = {"type": "array", "contains": STRING, "maxContains": 1}
    assert_incompatible(old, new, "", "cannot prove", breaks=["a", "b"])
    old = {"contains": STRING, "anyOf": [{"maxContains": 0}]}
    new = {"contains": STRING, "maxContains": 0}
    assert_incompatible(old, new, "/contains", "'contains'", "cannot prove", breaks=["a"])


def test_regression_min_contains_loosens_contains():
    old = {"type": "array", "contains": STRING, "minContains": 0}
    new = {"type": "array", "contains": STRING}
    assert_incompatible(old, new, "/contains", "cannot prove", breaks=[])


def test_regression_unevaluated_properties_sees_every_matching_branch():
    """{"a": 1, "b": 1} matches both branches of the old anyOf, so both annotate and the old schema
    accepts it; each branch of the new anyOf sees only its own property."""
    old = {"unevaluatedProperties": False, "anyOf": [obj({"a": {}}), obj({"b": {}})]}
    new = {
        "anyOf": [
            obj({"a": {}}, unevaluatedProperties=False),
            obj({"b": {}}, unevaluatedProperties=False),
        ]
    }
    assert_incompatible(old, new, "/anyOf", "one branch", breaks={"a": 1, "b": 1})


def test_regression_unevaluated_properties_apart_from_its_siblings():
    defs = {"t": {"properties": {"a": {}}, "allOf": [{"allOf": [{}]}]}}
    old = {"$defs": defs, "$ref": "#/$defs/t", "unevaluatedProperties": False}
    new = {"$defs": defs, "unevaluatedProperties": False}
    assert_incompatible(old, new, "", "cannot prove", breaks={"a": 1})
    old = {"unevaluatedProperties": False, "allOf": [{"properties": {"a": {}}}, {"allOf": [{}]}]}
    new = {"unevaluatedProperties": False}
    assert_incompatible(old, new, "", "cannot prove", breaks={"a": 1})


def test_regression_draft07_ignores_2020_12_keywords():
    old = {"$schema": DRAFT_07, "type": "array", "prefixItems": [STRING]}  # prefixItems: not draft-07
    new = {"$schema": DRAFT_07, "type": "array", "items": [STRING]}
    assert_incompatible(old, new, "/items/0/type", "any type", breaks=[1])
    # the same text means different things in the two drafts
    nested = obj({"a": {"type": "array", "prefixItems": [STRING]}})
    assert_incompatible(
        {"$schema": DRAFT_07, **nested},
        nested,
        "/properties/a/prefixItems/0/type",
        "string",
        breaks={"a": [1]},
    )
    assert_incompatible(
        {"$schema": DRAFT_07, "dependentRequired": {"a": ["b"]}},
        {"dependentRequired": {"a": ["b"]}},
        "/dependentRequired",
        "cannot prove",
        breaks={"a": 1},
    )
    # Python's 2020-12 validator ignores draft-07's `dependencies`
    assert_incompatible(
        {"dependencies": {"a": ["b"]}},
        {"$schema": DRAFT_07, "dependencies": {"a": ["b"]}},
        "/dependencies",
        "cannot prove",
        breaks={"a": 1},
    )


def test_regression_draft07_enum_checked_in_draft07_spelling():
    """The normalized form (prefixItems, items) was validated by the draft-07 validator, which then
    applied the additionalItems schema to every item and skipped ["a"]."""
    old = {"$schema": DRAFT_07, "enum": [["a"]], "items": [STRING], "additionalItems": INTEGER}
    assert_incompatible(old, {"const": ["b"]}, "", '["a"]', breaks=["a"])


def test_regression_circular_or_endless_ref_chain():
    defs = {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(70)}
    defs["a70"] = STRING
    found = errors("BACKWARD", {"$defs": defs, "$ref": "#/$defs/a0"}, INTEGER)
    assert len(found) == 1
    assert_sentence(found[0]["message"], "$ref", "circular or longer")
    assert not valid({"$defs": defs, "$ref": "#/$defs/a0"}, 1)
    circular = {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    assert_incompatible(INTEGER, circular, "/$defs/b", "circular")


def test_regression_recursion_that_does_not_descend_into_the_document():
    """Python's jsonschema recurses forever on this schema; it used to be judged to accept integers."""
    new = {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}
    assert_incompatible(INTEGER, new, "/$defs/a/anyOf", "one branch")
    with pytest.raises(RecursionError):
        valid(new, 1)


def test_regression_percent_encoded_ref():
    defs = {"a%25": STRING, "a%": INTEGER}  # '#/$defs/a%25' means the key 'a%'
    new = {"$defs": defs, "$ref": "#/$defs/a%25"}
    assert_incompatible(STRING, new, "/$defs/a%/type", "string", breaks="x")
    assert_compatible(INTEGER, new, [1, "x"])


def test_regression_property_names_are_matched_as_record_validation_matches_them():
    """'٣' (an Arabic-Indic digit) is no ECMA-262 \\d. The checker once matched names with Python's re,
    where it is one, and had to call such names undecidable; it now asks the engine validation uses."""
    old = obj({"٣": INTEGER}, additionalProperties=False)
    new = obj({}, patternProperties={"^\\d$": INTEGER}, additionalProperties=False)
    assert_incompatible(old, new, "/additionalProperties", "accepts nothing")
    assert valid(old, {"٣": 1}, "rust") and not valid(new, {"٣": 1}, "rust")
    assert_compatible(obj({"3": INTEGER}, additionalProperties=False), new, [{"3": 1}, {}])


def test_a_unicode_property_pattern_matches_names_as_record_validation_does():
    """\\p{Letter} is ECMA-262 (Python's re does not know it): names are matched by the records' engine."""
    letters = obj({}, patternProperties={"^\\p{Letter}+$": INTEGER}, additionalProperties=False)
    assert (
        errors("BACKWARD", letters, obj({"élan": INTEGER, "Ωmega": INTEGER}, additionalProperties=False))
        == []
    )
    assert valid(letters, {"élan": 1, "Ωmega": 2}, "rust")
    assert_incompatible(obj({"a1": INTEGER}, additionalProperties=False), letters, "/additionalProperties")
    assert not valid(letters, {"a1": 1}, "rust")


def test_an_enum_is_checked_against_a_pattern_as_record_validation_checks_it():
    old = {"enum": ["élan", "Ωmega"]}
    assert errors("BACKWARD", {"type": "string", "pattern": "^\\p{Letter}+$"}, old) == []
    [error] = errors("BACKWARD", {"type": "string", "pattern": "^\\p{Lu}"}, old)
    assert error["path"] == ""
    assert_sentence(
        error["message"], "\\u00e9lan", "valid under the version 1 schema but not under the new one"
    )


def test_a_name_that_takes_a_backtracking_engine_exponential_time_is_matched_at_once():
    """^(a+)+$ against 'a' * n + '!' backtracks 2**n times in Python's re (seconds here, for n = 25; the
    server test sends n = 34); the linear engine answers at once, and exactly as validation does."""
    name = "a" * 25 + "!"
    old = obj({name: INTEGER}, patternProperties={"^(a+)+$": INTEGER})
    new = obj({name: {"type": "number"}}, patternProperties={"^(a+)+$": {"type": "number"}})
    assert errors("BACKWARD", new, old) == []
    assert_incompatible(new, old, f"/properties/{name}/type", "number", "rejects")


# --- the work budget ---------------------------------------------------------------------------------


TOO_COMPLEX = {
    "nested anyOf": (
        nested_any_of(10, {"type": "string", "maxLength": 5}),
        nested_any_of(10, {"type": "string", "maxLength": 4}),
    ),
    "many patternProperties": (
        obj({f"p{i}": {} for i in range(300)}, patternProperties={f"^p{i}$": {} for i in range(300)}),
        obj({f"p{i}": {} for i in range(300)}, patternProperties={f"^p{i}$": STRING for i in range(300)}),
    ),
    "a long enum against patterns": (
        {"enum": [f"v{i}" * 20 for i in range(2000)]},
        {"allOf": [{"pattern": f"^(v{i})+$|^v"} for i in range(100)]},
    ),
}


@pytest.mark.parametrize("case", TOO_COMPLEX)
def test_past_its_work_budget_the_checker_answers_too_complex_to_prove(case):
    old, new = TOO_COMPLEX[case]
    found = errors("BACKWARD", new, old)
    assert [error["path"] for error in found] == [""]
    assert_sentence(found[0]["message"], "too complex to prove", "200000 steps", "incompatible")


def test_the_work_budget_is_shared_by_every_comparison_of_one_question():
    old = nested_any_of(6, {"type": "string", "maxLength": 5})
    new = nested_any_of(6, {"type": "string", "maxLength": 4})
    [error] = subschema_errors(old, new, budget=10_000)
    assert "too complex" not in error.message  # the real answer: 8191 steps
    [error] = subschema_errors(old, new, budget=8_000)
    assert "too complex" in error.message
    found = compatibility_errors("BACKWARD_TRANSITIVE", new, [old] * 100, budget=100_000)
    assert len(found) == 13  # the real answer for 12 versions, then the budget was spent
    assert found[-1].path == "" and "100000 steps" in found[-1].message


# --- definitions -----------------------------------------------------------------------------------------


def test_check_definition_accepts_2020_12_and_draft07():
    check_definition(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"s": STRING},
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/s"}, "b": {"prefixItems": [INTEGER]}},
        }
    )
    check_definition(
        {
            "$schema": DRAFT_07,
            "definitions": {"s": STRING},
            "type": "array",
            "items": [{"$ref": "#/definitions/s"}],
            "additionalItems": False,
        }
    )
    check_definition(True)


def test_check_definition_refuses_an_invalid_schema_with_its_path():
    with pytest.raises(SchemaProblem) as raised:
        check_definition({"type": "object", "properties": {"a": {"type": "strnig"}}})
    assert raised.value.path == "/properties/a/type"
    assert raised.value.message.startswith('Not a valid JSON Schema: "strnig" is not valid')
    with pytest.raises(SchemaProblem) as raised:
        check_definition({"minLength": -1})
    assert raised.value.path == "/minLength"
    with pytest.raises(SchemaProblem):
        check_definition([STRING])


def test_check_definition_refuses_remote_and_dangling_refs():
    with pytest.raises(SchemaProblem) as raised:
        check_definition({"properties": {"a": {"$ref": "https://example.com/s.json"}}})
    assert raised.value.path == "/properties/a/$ref"
    assert_sentence(raised.value.message, "https://example.com/s.json", "local")
    with pytest.raises(SchemaProblem) as raised:
        check_definition({"$defs": {"s": STRING}, "$ref": "#/$defs/missing"})
    assert raised.value.path == "/$ref"
    assert_sentence(raised.value.message, "#/$defs/missing", "points to nothing")


def test_check_definition_refuses_unsupported_drafts():
    with pytest.raises(SchemaProblem) as raised:
        check_definition({"$schema": "http://json-schema.org/draft-04/schema#", "type": "string"})
    assert raised.value.path == "/$schema"
    assert_sentence(raised.value.message, "draft-04", "not supported")


def test_canonical_is_stable_under_key_order():
    one = {"type": "object", "properties": {"b": STRING, "a": {"enum": [2, 1]}}, "required": ["a"]}
    two = {"required": ["a"], "properties": {"a": {"enum": [2, 1]}, "b": STRING}, "type": "object"}
    assert canonical(one) == canonical(two)
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert canonical({"enum": [1, 2]}) != canonical({"enum": [2, 1]})  # arrays keep their order


def test_subschema_errors_answers_the_underlying_question():
    assert subschema_errors(INTEGER, {"type": "number"}) == []
    [error] = subschema_errors({"type": "number"}, INTEGER, narrow_name="v1", wide_name="v2")
    assert error.path == "/type"
    assert_sentence(error.message, "v1", "v2", "number")
