"""Soundness of the compatibility checker, by property: a verdict "compatible" must hold for documents.

Schema pairs are generated (the new schema mostly a mutation of the old one, so that many pairs are
judged compatible); for every pair judged compatible, documents generated from the old schema by
hypothesis-jsonschema must all validate against the new one. The budget and seed are fixed, so CI
runs the same examples every time; a failure prints the schemas and the document that breaks them.
"""

import json

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, Unsatisfiable
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from schemas.compat import subschema_errors

NAMES = ["a", "b", "c"]
PATTERNS = ["^a", "^[ab]+$", "b$"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "a", "ab", "b"]))


def leaf() -> st.SearchStrategy:
    integer = st.fixed_dictionaries(
        {"type": st.just("integer")},
        optional={
            "minimum": st.integers(-3, 3),
            "maximum": st.integers(-3, 3),
            "exclusiveMinimum": st.integers(-3, 3),
            "multipleOf": st.sampled_from([1, 2, 3, 4]),
        },
    )
    number = st.fixed_dictionaries(
        {"type": st.just("number")},
        optional={
            "minimum": st.sampled_from([-1, 0, 0.5, 1]),
            "exclusiveMaximum": st.sampled_from([0, 0.5, 1, 2]),
            "multipleOf": st.sampled_from([0.5, 1, 0.25]),
        },
    )
    string = st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(0, 4),
            "pattern": st.sampled_from(PATTERNS),
        },
    )
    simple = st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}, {"type": ["string", "integer"]}])
    finite = st.one_of(
        st.builds(lambda v: {"const": v}, SCALARS),
        st.builds(lambda vs: {"enum": vs}, st.lists(SCALARS, min_size=1, max_size=4, unique_by=json.dumps)),
    )
    return st.one_of(integer, number, string, simple, finite)


def extend(children: st.SearchStrategy) -> st.SearchStrategy:
    obj = st.fixed_dictionaries(
        {"type": st.just("object")},
        optional={
            "properties": st.dictionaries(st.sampled_from(NAMES), children, max_size=3),
            "required": st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
            "additionalProperties": st.one_of(st.booleans(), children),
            "patternProperties": st.dictionaries(st.just("^x"), children, max_size=1),
            "maxProperties": st.integers(0, 4),
        },
    )
    array = st.fixed_dictionaries(
        {"type": st.just("array")},
        optional={
            "items": st.one_of(st.booleans(), children),
            "prefixItems": st.lists(children, min_size=1, max_size=2),
            "minItems": st.integers(0, 2),
            "maxItems": st.integers(0, 3),
            "uniqueItems": st.booleans(),
        },
    )
    logic = st.one_of(
        st.builds(lambda xs: {"anyOf": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"oneOf": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"allOf": xs}, st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda x: {"not": x}, children),
    )
    return st.one_of(obj, array, logic)


SCHEMAS = st.recursive(leaf(), extend, max_leaves=6)


@st.composite
def mutated(draw, schema):
    """A variation of schema: most edits widen, some narrow, so both verdicts occur."""
    edit = draw(st.integers(0, 9))
    if edit == 0 or not isinstance(schema, dict):
        return draw(SCHEMAS)
    new = dict(schema)
    if edit == 1:
        return {"anyOf": [schema, draw(SCHEMAS)]}
    if edit == 2 and "required" in new:
        new["required"] = new["required"][:-1]
    elif edit == 3:
        for bound in (
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
            "maxProperties",
        ):
            if bound in new and draw(st.booleans()):
                new[bound] += draw(st.integers(-2, 2))
                new[bound] = max(new[bound], 0) if "imum" not in bound else new[bound]
    elif edit == 4 and "type" in new and isinstance(new["type"], str):
        new["type"] = draw(st.sampled_from([new["type"], [new["type"], "null"], "number"]))
    elif edit == 5 and "properties" in new:
        name = draw(st.sampled_from(NAMES))
        props = dict(new["properties"])
        props[name] = draw(st.one_of(SCHEMAS, st.builds(lambda s: s, st.just(props.get(name, {})))))
        new["properties"] = props
    elif edit == 6:
        new["additionalProperties"] = draw(st.one_of(st.booleans(), SCHEMAS))
    elif edit == 7 and new.get("properties"):
        name = draw(st.sampled_from(sorted(new["properties"])))
        props = dict(new["properties"])
        props[name] = draw(mutated(props[name]))
        new["properties"] = props
    elif edit == 8:
        for keyword in (
            "pattern",
            "multipleOf",
            "uniqueItems",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "not",
        ):
            new.pop(keyword, None)
    else:
        new.pop(draw(st.sampled_from(sorted(new) or ["type"])), None)
    return new


@st.composite
def schema_pairs(draw):
    old = draw(SCHEMAS)
    new = draw(st.one_of(mutated(old), mutated(old), SCHEMAS))
    return old, new


ANY_JSON = st.recursive(
    st.one_of(SCALARS, st.floats(-2, 2, allow_nan=False).map(lambda x: round(x * 4) / 4)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from([*NAMES, "x1", "d"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.slow(seconds=20)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(pair=schema_pairs(), data=st.data())
def test_a_compatible_verdict_holds_for_documents_of_the_old_schema(pair, data):
    old, new = pair
    if subschema_errors(old, new):
        event("judged incompatible")
        return
    event("judged compatible: identical" if old == new else "judged compatible: changed")
    # Documents from the old schema's own generator, plus arbitrary small JSON values it happens to accept.
    documents = data.draw(st.lists(ANY_JSON, min_size=4, max_size=8), label="arbitrary values")
    try:
        documents += data.draw(st.lists(from_schema(old), min_size=1, max_size=4), label="documents")
    except (Unsatisfiable, InvalidArgument):
        event("old schema accepts nothing that can be generated")
    validator = Draft202012Validator(new)
    old_validator = Draft202012Validator(old)
    for document in documents:
        if not old_validator.is_valid(document):
            continue  # the generator may over-approximate; only real documents of the old schema count
        note(f"old schema: {json.dumps(old)}")
        note(f"new schema: {json.dumps(new)}")
        note(f"document:   {json.dumps(document)}")
        assert validator.is_valid(document), "judged compatible, yet the new schema rejects this document"
