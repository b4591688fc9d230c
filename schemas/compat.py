"""Whether one JSON Schema accepts every document another accepts: the compatibility checker.

A plain module with no Django imports. `compatibility_errors(mode, new, previous)` answers for the
seven modes of the schema registry; `subschema_errors(narrow, wide)` is the underlying question: does
`wide` accept every document that `narrow` accepts?

The checker is sound and deliberately incomplete: it answers "compatible" (no errors) only when it can
prove that no document breaks the change. Where it cannot decide (a `pattern` that changed, an `if`
it does not understand, a `oneOf` whose branches may overlap), it reports an incompatibility that says
why. It follows the conventions of the widely used Kafka schema registries for JSON Schema where they
are sound: an object that allows additional properties is open, so adding a property to it, or closing
it, is not backward compatible.

Values and property names are checked by jsonschema-rs with the options of record validation (patterns
on the linear-time engine of schemas/patterns.py), so the checker and validation agree on them. Its work
is bounded: one question may take `budget` steps (DEFAULT_BUDGET unless the caller says), and past them
the answer is one error, "too complex to prove compatible".

Conventions: "narrow" is the schema whose documents must all be accepted, "wide" the one that must
accept them. In BACKWARD mode narrow is the previous version and wide the new one; in FORWARD mode the
other way round. Every error carries a JSON Pointer into the new schema.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from urllib.parse import unquote

import jsonschema_rs
from jsonschema import Draft7Validator, Draft202012Validator

from schemas.patterns import (
    DEFINITION_PATTERNS_LIMIT,
    PATTERN_OPTIONS,
    is_supported,
    pattern_matches,
    pattern_problem,
    pattern_weight,
)

MODES = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DRAFT_07 = "http://json-schema.org/draft-07/schema"
JSON_TYPES = ("null", "boolean", "object", "array", "number", "string")
# Keywords that never change which documents a schema accepts (format is not asserted by Nucleus).
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)
# Annotations that no validator Nucleus uses ever asserts or resolves against (format is not asserted).
_PURE_ANNOTATIONS = ANNOTATIONS - {"$schema", "$id", "$anchor", "$dynamicAnchor", "$defs", "definitions"}
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_STRING = ("minLength", "maxLength", "pattern")
_ARRAY = ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems")
_OBJECT = (
    "properties",
    "patternProperties",
    "additionalProperties",
    "required",
    "minProperties",
    "maxProperties",
)
_LOGIC = ("allOf", "anyOf", "oneOf", "not", "$ref", "enum", "const", "type")
# Keywords compared only for equality: when the wide schema has one, the narrow must have the same.
_OPAQUE = (
    "contains",
    "minContains",
    "maxContains",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
)
# Their meaning depends on the other keywords around them: only an unchanged schema is provably fine.
_SIBLING_DEPENDENT = frozenset({"unevaluatedProperties", "unevaluatedItems", "$dynamicRef"})
_UNEVALUATED = ("unevaluatedProperties", "unevaluatedItems")
# Keywords that act together: `then` does nothing without `if`, `minContains` loosens `contains`. They
# are compared, and merged, only as a whole.
_GROUPS = (("if", "then", "else"), ("contains", "minContains", "maxContains"))
# Keywords a draft does not have; both validators ignore them, so the checker drops them too.
_IGNORED_BY = {
    "draft-07": frozenset(
        {
            "prefixItems",
            "dependentRequired",
            "dependentSchemas",
            "unevaluatedProperties",
            "unevaluatedItems",
            "minContains",
            "maxContains",
            "$dynamicRef",
        }
    ),
    "2020-12": frozenset({"additionalItems"}),
}
_KNOWN = ANNOTATIONS | set(_NUMERIC) | set(_STRING) | set(_ARRAY) | set(_OBJECT) | set(_LOGIC) | set(_OPAQUE)
_MAX_DEPTH = 60
# Steps of work one compatibility question may take (comparisons, value checks, pattern matches, and a
# step per kilobyte of schema text compared); past it the answer is "incompatible: too complex".
DEFAULT_BUDGET = 200_000


@dataclass(frozen=True)
class Incompatibility:
    path: str  # JSON Pointer into the new schema
    message: str

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


class SchemaProblem(ValueError):
    """The definition is not a usable JSON Schema for Nucleus; message and path say why."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.message = message
        self.path = path


class _BudgetExhausted(Exception):
    """The comparison used up its work budget."""


class _Budget:
    """The steps of work left to one compatibility question, shared by all its comparisons."""

    def __init__(self, steps: int):
        self.total = self.left = steps

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise _BudgetExhausted


# --- definitions: draft, validity, local references ----------------------------------------------


def validator_class(definition) -> type:
    """Draft 2020-12 unless the definition declares draft-07 in $schema."""
    if isinstance(definition, dict):
        declared = str(definition.get("$schema", "")).rstrip("#")
        if declared == DRAFT_07:
            return Draft7Validator
        if declared and declared.rstrip("/") not in ("https://json-schema.org/draft/2020-12/schema",):
            raise SchemaProblem(
                f"$schema {definition['$schema']!r} is not supported: use draft 2020-12 (the default) or "
                "draft-07.",
                "/$schema",
            )
    return Draft202012Validator


def _pointer(parts) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _refuse_remote(uri: str):
    raise ValueError(f"Nucleus never fetches schemas ({uri})")


def _any_uri(value: str) -> bool:
    return True  # as before: only `regex` among the metaschemas' formats is asserted


@functools.cache
def _metaschema_validator(draft07: bool):
    """The draft's metaschema, compiled by jsonschema-rs, asserting the `regex` format as Nucleus runs it."""
    cls = jsonschema_rs.Draft7Validator if draft07 else jsonschema_rs.Draft202012Validator
    uri = DRAFT_07 + "#" if draft07 else "https://json-schema.org/draft/2020-12/schema"
    return cls(
        {"$ref": uri},
        validate_formats=True,
        formats={"regex": is_supported, "uri": _any_uri, "uri-reference": _any_uri},
        retriever=_refuse_remote,
    )


def _deepest(error):
    """Into the branches of an anyOf or oneOf error while one goes deeper into the definition (like
    jsonschema's best_match): draft-07 `items` is a schema or an array, and its pattern is what failed."""
    while branches := getattr(error.kind, "context", None):
        deeper = max(
            (e for branch in branches for e in branch), key=lambda e: len(e.instance_path), default=error
        )
        if len(deeper.instance_path) <= len(error.instance_path):
            break
        error = deeper
    return error


def check_definition(definition) -> None:
    """Raise SchemaProblem unless definition is a valid JSON Schema whose every $ref is local.

    Every pattern must be ECMA-262 and run on the linear-time engine (schemas/patterns.py).
    """
    if not isinstance(definition, dict | bool):
        raise SchemaProblem("A schema definition must be a JSON object (or a boolean).")
    cls = validator_class(definition)
    _check_patterns(definition)
    error = next(_metaschema_validator(cls is Draft7Validator).iter_errors(definition), None)
    if error is None:
        _check_refs(definition, definition, [])
        return
    error = _deepest(error)
    parts, message = list(error.instance_path), error.message
    kinds = jsonschema_rs.ValidationErrorKind
    if isinstance(error.kind, kinds.PropertyNames):  # a patternProperties name: point at it
        error = error.kind.error
        parts.append(error.instance)
    if isinstance(error.kind, kinds.Format) and error.kind.format == "regex":
        message = f"the pattern {json.dumps(error.instance)} {pattern_problem(error.instance)}"
    raise SchemaProblem(f"Not a valid JSON Schema: {message}", _pointer(parts))


def _patterns(schema, path: list):
    """(pattern, path) of every pattern and patternProperties name in schema positions of schema."""
    if not isinstance(schema, dict):
        return
    for name, value in schema.items():
        if name == "pattern" and isinstance(value, str):
            yield value, [*path, name]
        elif name in _SCHEMA_MAPS and isinstance(value, dict):
            for key, item in value.items():
                if name == "patternProperties":
                    yield key, [*path, name, key]
                yield from _patterns(item, [*path, name, key])
        elif name == "dependencies" and isinstance(value, dict):
            for key, item in value.items():
                yield from _patterns(item, [*path, name, key])
        elif name in _SCHEMA_LISTS and isinstance(value, list):
            for index, item in enumerate(value):
                yield from _patterns(item, [*path, name, index])
        elif name in _SCHEMA_KEYWORDS:
            yield from _patterns(value, [*path, name])


def _check_patterns(definition) -> None:
    """Raise SchemaProblem for a pattern Nucleus refuses, or when the distinct patterns of the definition
    weigh more than DEFINITION_PATTERNS_LIMIT together; stops compiling as soon as either is known."""
    seen, total = set(), 0
    for pattern, path in _patterns(definition, []):
        if pattern in seen:
            continue
        weight = pattern_weight(pattern)
        if weight is None:
            message = f"Not a valid JSON Schema: the pattern {json.dumps(pattern)} {pattern_problem(pattern)}"
            raise SchemaProblem(message, _pointer(path))
        seen.add(pattern)
        total += weight
        if total > DEFINITION_PATTERNS_LIMIT:
            raise SchemaProblem(
                f"The {len(seen)} distinct patterns up to this one compile to more than "
                f"{DEFINITION_PATTERNS_LIMIT // 2**20} MiB together, the most one definition may hold (each "
                "weighs 1 to 256 KiB: most ASCII patterns 1 to 16, one with \\p{...} classes 64 or 256); use "
                "fewer distinct patterns, or simpler ones.",
                _pointer(path),
            )


def _check_refs(node, root, path) -> None:
    if isinstance(node, dict):
        for name, value in node.items():
            if name in ("$ref", "$dynamicRef") and isinstance(value, str):
                if not value.startswith("#"):
                    raise SchemaProblem(
                        f"{name} {value!r} points outside the document; Nucleus never fetches schemas, "
                        "so only local references such as '#/$defs/name' are allowed.",
                        _pointer([*path, name]),
                    )
                if _resolve_pointer(root, value) is _MISSING:
                    raise SchemaProblem(
                        f"{name} {value!r} points to nothing in this document.", _pointer([*path, name])
                    )
            elif name == "$id" and isinstance(value, str) and path:
                raise SchemaProblem(
                    "Nested $id is not supported; use $defs and '#/$defs/...' references.",
                    _pointer([*path, name]),
                )
            else:
                _check_refs(value, root, [*path, name])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_refs(value, root, [*path, index])


_MISSING = object()


def _resolve_pointer(root, ref: str):
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return _MISSING  # anchors are not supported
    node = root
    for raw in unquote(ref[2:]).split("/"):  # a URI fragment: percent-decoded first, as validators do
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def canonical(definition) -> str:
    """Canonical JSON text (sorted keys, no spaces): what fingerprints are computed from."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- the subschema check --------------------------------------------------------------------------


# Keywords whose value is a schema, a list of schemas, or an object of schemas (every draft Nucleus takes).
_SCHEMA_KEYWORDS = frozenset(
    {
        "additionalProperties",
        "additionalItems",
        "items",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contentSchema",
    }
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_ROOT_URI = "urn:nucleus:schema"


def _absolute_refs(schema, found: dict):
    """schema with its local references ("#...") made absolute against _ROOT_URI; values untouched.

    Counts into found what it meets on the way: "refs", "patterns" (pattern and patternProperties), and
    their "weight" (schemas/patterns.py).
    """
    if not isinstance(schema, dict):
        return schema
    result = {}
    for name, value in schema.items():
        if name in ("$ref", "$dynamicRef") and isinstance(value, str) and value.startswith("#"):
            value = _ROOT_URI + value
            found["refs"] += 1
        elif name == "pattern" and isinstance(value, str):
            found["patterns"] += 1
            found["weight"] += pattern_weight(value) or 0
        elif name in _SCHEMA_MAPS and isinstance(value, dict):
            if name == "patternProperties":
                found["patterns"] += len(value)
                found["weight"] += sum(pattern_weight(key) or 0 for key in value)
            value = {key: _absolute_refs(item, found) for key, item in value.items()}
        elif name == "dependencies" and isinstance(value, dict):
            value = {key: _absolute_refs(item, found) for key, item in value.items()}  # lists of names stay
        elif name in _SCHEMA_LISTS and isinstance(value, list):
            value = [_absolute_refs(item, found) for item in value]
        elif name in _SCHEMA_KEYWORDS:
            value = _absolute_refs(value, found)
        result[name] = value
    return result


class _Side:
    """One schema document: its root (for $ref and for validating values) and its draft.

    Values are checked by jsonschema-rs with the engine and the options of record validation, so the
    checker and validation never disagree about a value (a pattern above all).
    """

    def __init__(self, root, name: str):
        self.root = root
        self.name = name
        self.cls = validator_class(root)
        self.draft07 = self.cls is Draft7Validator
        self.ignored = _IGNORED_BY["draft-07" if self.draft07 else "2020-12"]
        self._registry = None
        self._root_found = {"patterns": 0, "weight": 0, "refs": 0}
        # id(schema) -> (schema, validator, steps, patterns): the schema is kept so its id stays unique
        self._validators: dict[int, tuple] = {}

    def _registry_of_root(self):
        """The root in a registry under _ROOT_URI (without $id: every reference is local); built once."""
        if self._registry is None:
            root = {k: v for k, v in self.root.items() if k != "$id"} if isinstance(self.root, dict) else {}
            _absolute_refs(root, self._root_found)
            draft = jsonschema_rs.Draft7 if self.draft07 else jsonschema_rs.Draft202012
            self._registry = jsonschema_rs.Registry([(_ROOT_URI, root)], draft=draft)
        return self._registry

    def validator(self, schema, spend) -> tuple:
        """(validator, steps, patterns) of schema (normalized by _norm): record validation's rules for it.

        Compiling it first spends (through `spend`) a step per 256 bytes its patterns weigh, and the first
        compilation of the side a step per KiB of its root. Checking a value then costs the steps, which
        grow with the schema's size (an enum, say), and up to a step per character of the value for each
        of the patterns (the worst pattern schemas/patterns.py admits costs about that). What a $ref
        reaches counts as the whole root.
        """
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1:]
        spelled = schema
        if self.draft07 and isinstance(schema, dict) and "prefixItems" in schema:
            spelled = dict(schema)  # back to draft-07 spelling; prefixItems exists only from _norm here
            rest = spelled.pop("items", None)
            spelled.pop("additionalItems", None)
            spelled["items"] = spelled.pop("prefixItems")
            if rest is not None:
                spelled["additionalItems"] = rest
        if self._registry is None:
            spend(len(canonical(self.root)) // 1024)
        registry = self._registry_of_root()
        found = {"patterns": 0, "weight": 0, "refs": 0}
        absolute = _absolute_refs(spelled, found)
        if found["refs"]:
            found = {key: found[key] + self._root_found[key] for key in found}
        spend(found["weight"] // 256)
        cls = jsonschema_rs.Draft7Validator if self.draft07 else jsonschema_rs.Draft202012Validator
        try:
            validator = cls(
                absolute,
                validate_formats=False,
                pattern_options=PATTERN_OPTIONS,
                registry=registry,
                retriever=_refuse_remote,
            )
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
            # e.g. a version stored before patterns had to run on the linear-time engine
            message = str(getattr(exc, "message", exc)).splitlines()[0]
            raise SchemaProblem(f"The {self.name} schema cannot be evaluated here: {message}.") from None
        steps = 1 + len(canonical(spelled)) // (16 * 1024)
        self._validators[id(schema)] = (schema, validator, steps, found["patterns"])
        return validator, steps, found["patterns"]


def _norm(schema, side: _Side):
    """Booleans to objects; keywords the side's draft ignores dropped; draft-07 tuple `items` to
    `prefixItems` (and `additionalItems` to `items`)."""
    if schema is True:
        return {}
    if schema is False:
        return {"not": {}}
    tuple_items = schema.get("items") if isinstance(schema.get("items"), list) else None
    rest = schema.get("additionalItems", _MISSING) if tuple_items is not None else _MISSING
    if tuple_items is not None or side.ignored & schema.keys() or "additionalItems" in schema:
        # additionalItems is inert without tuple items (and 2020-12 has no such keyword)
        drop = side.ignored | {"items", "additionalItems"} if tuple_items is not None else side.ignored
        schema = {k: v for k, v in schema.items() if k not in drop and k != "additionalItems"}
        if tuple_items is not None:
            schema["prefixItems"] = tuple_items
            if rest is not _MISSING:
                schema["items"] = rest
    return schema


def _is_false(schema) -> bool:
    return schema is False or (
        isinstance(schema, dict) and schema.get("not") in ({}, True) and len(schema) == 1
    )


def _constraining(schema: dict) -> set[str]:
    return {name for name in schema if name not in ANNOTATIONS}


def _is_true(schema) -> bool:
    return schema is True or (isinstance(schema, dict) and not _constraining(schema))


def _types(schema: dict) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    types = {declared} if isinstance(declared, str) else set(declared)
    if "integer" in types and "number" in types:
        types.discard("integer")
    return types


def _finite_values(schema: dict) -> list | None:
    if "const" in schema:
        values = [schema["const"]]
    elif "enum" in schema:
        values = list(schema["enum"])
    else:
        return None
    return values


def _fraction(value) -> Fraction | None:
    try:
        return Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


class _Conjunction(dict):
    """The allOf that _deref makes of a $ref and its sibling keywords: [{"$ref": ...}, siblings]."""


def _conjunct_path(schema, path: str, index: int) -> str:
    """The pointer to branch index of schema's allOf; the siblings of a $ref stay where they are."""
    return path if isinstance(schema, _Conjunction) and index == 1 else f"{path}/allOf/{index}"


class _Checker:
    def __init__(self, narrow: _Side, wide: _Side, new_is_wide: bool, budget: _Budget):
        self.narrow, self.wide = narrow, wide
        self.new_is_wide = new_is_wide
        self.budget = budget
        # pairs being compared through $ref, with the document depth at which each comparison started
        self.assumed: dict[tuple[str, str], int] = {}
        self.doc_depth = 0  # how many objects/arrays deep into the document the comparison has gone

    # errors point into the new schema
    def _error(self, pn: str, pw: str, message: str) -> list[Incompatibility]:
        return [Incompatibility(pw if self.new_is_wide else pn, message)]

    def _names(self) -> tuple[str, str]:
        return self.narrow.name, self.wide.name

    def _accepts(self, side: _Side, value, schema) -> bool:
        """Whether record validation accepts value under schema on side."""
        validator, steps, patterns = side.validator(schema, self.budget.spend)
        self.budget.spend(steps + (patterns * len(canonical(value)) if patterns else 0))
        return validator.is_valid(value)

    def _matches(self, pattern: str, name: str) -> bool:
        """Whether pattern matches name; a step, and one per character (the worst pattern's cost)."""
        self.budget.spend(1 + len(name))
        return pattern_matches(pattern, name)

    def _deref(self, schema, path: str, side: _Side, depth: int = 0):
        """Follow $ref (merging sibling keywords as allOf); returns (schema, path of what was reached)."""
        schema = _norm(schema, side)
        while "$ref" in schema and depth < _MAX_DEPTH:
            ref = schema["$ref"]
            target = _resolve_pointer(side.root, ref)
            if target is _MISSING:
                raise SchemaProblem(f"$ref {ref!r} points to nothing.", path)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if side is self.narrow:
                # apart from the $ref, unevaluated* would see fewer annotations and reject more: drop it
                rest = {k: v for k, v in rest.items() if k not in _UNEVALUATED}
            if _constraining(rest) and not side.draft07:  # draft-07 ignores $ref's siblings
                return _Conjunction(allOf=[{"$ref": ref}, rest]), path
            schema, path = _norm(target, side), unquote(ref[1:])
            depth += 1
        if "$ref" in schema:
            raise SchemaProblem(
                f"The $ref chain at {path or '/'} is circular or longer than {_MAX_DEPTH}; Nucleus cannot "
                "follow it.",
                path,
            )
        return schema, path

    def subset(self, n, pn: str, w, pw: str, depth: int = 0) -> list[Incompatibility]:
        """Errors unless every document valid under n (narrow) is valid under w (wide)."""
        self.budget.spend()
        if depth > _MAX_DEPTH:
            return self._error(
                pn, pw, "The schemas nest too deeply to be compared; treating the change as incompatible."
            )
        n_had_ref = isinstance(n, dict) and "$ref" in n
        w_had_ref = isinstance(w, dict) and "$ref" in w
        n, pn = self._deref(n, pn, self.narrow)
        w, pw = self._deref(w, pw, self.wide)
        if n_had_ref or w_had_ref:
            key = (pn, pw)
            if key in self.assumed:
                if self.assumed[key] < self.doc_depth:
                    # a recursive pair met again one level down in the document: assume it holds
                    # (coinduction, sound because documents are finite)
                    return []
                return self._error(
                    pn,
                    pw,
                    "The schema refers to itself without descending into the document; Nucleus cannot "
                    "compare it.",
                )
            self.assumed[key] = self.doc_depth
            try:
                return self._subset(n, pn, w, pw, depth)
            finally:
                del self.assumed[key]
        return self._subset(n, pn, w, pw, depth)

    def _subset(self, n, pn: str, w, pw: str, depth: int) -> list[Incompatibility]:
        if _is_true(w) or _is_false(n):
            return []
        nn, wn = self._names()
        if _is_false(w):
            return self._error(
                pn,
                pw,
                f"The {wn} schema accepts nothing at this point, where the {nn} one accepts documents.",
            )
        same_draft = self.narrow.cls is self.wide.cls
        # `==` first: cheap, and false whenever the texts differ (though 1 == 1.0 == true, so not enough)
        if same_draft and n == w:
            n_text, w_text = canonical(n), canonical(w)
            self.budget.spend((len(n_text) + len(w_text)) // 1024)  # comparing big schemas is work too
            if n_text == w_text and '"$ref"' not in n_text:
                return []

        # the wide side: conjunctions, disjunctions and negation
        if "allOf" in w:
            rest = {k: v for k, v in w.items() if k != "allOf"}
            errors = self.subset(n, pn, rest, pw, depth + 1) if _constraining(rest) else []
            for index, branch in enumerate(w["allOf"]):
                errors += self.subset(n, pn, branch, _conjunct_path(w, pw, index), depth + 1)
            return errors

        # the narrow side: split disjunctions, merge conjunctions, drop what only narrows it further
        if "anyOf" in n or "oneOf" in n:
            word = "anyOf" if "anyOf" in n else "oneOf"
            # unevaluated* of the rest sees the annotations of every matching branch, not just one: drop it
            rest = {k: v for k, v in n.items() if k != word and k not in _UNEVALUATED}
            errors = []
            for index, branch in enumerate(n[word]):
                merged = (
                    _merge(rest, self._deref(branch, "", self.narrow)[0]) if _constraining(rest) else None
                )
                errors += self.subset(merged or branch, f"{pn}/{word}/{index}", w, pw, depth + 1)
            return errors
        if "allOf" in n:
            merged = _merge_all(n, lambda s: self._deref(s, "", self.narrow)[0])
            if merged is not None:
                return self.subset(merged, pn, w, pw, depth + 1)
            # fall back: enough that one conjunct (or the rest) is inside w
            rest = {k: v for k, v in n.items() if k != "allOf" and k not in _UNEVALUATED}
            candidates = [(rest, pn)] + [(b, _conjunct_path(n, pn, i)) for i, b in enumerate(n["allOf"])]
            for candidate, path in candidates:
                if not self.subset(candidate, path, w, pw, depth + 1):
                    return []
            return self._error(
                pn, pw, f"Cannot prove that the allOf of the {nn} schema fits within the {wn} schema."
            )

        values = _finite_values(n)
        if values is not None:
            return self._values_inside(values, n, pn, w, pw)

        n_types = _types(n)
        if n_types is not None and len(n_types) > 1:
            errors = []
            for t in sorted(n_types):
                errors += self.subset({**n, "type": t}, pn, w, pw, depth + 1)
            return errors

        if "anyOf" in w:
            return self._inside_some(n, pn, w, pw, "anyOf", depth)
        if "oneOf" in w:
            return self._inside_one(n, pn, w, pw, depth)
        if "not" in w:
            rest = {k: v for k, v in w.items() if k != "not"}
            errors = self.subset(n, pn, rest, pw, depth + 1) if _constraining(rest) else []
            if not self.disjoint(n, w["not"]):
                errors += self._error(
                    pn,
                    pw + "/not",
                    f"Cannot prove that documents of the {nn} schema never match the 'not' of the {wn} one.",
                )
            return errors

        for keyword in _OPAQUE:
            if keyword not in w:
                continue
            group = next((g for g in _GROUPS if keyword in g), (keyword,))
            text = canonical({k: w[k] for k in group if k in w})
            if (
                keyword in _SIBLING_DEPENDENT
                or not same_draft
                or '"$ref"' in text
                or text != canonical({k: n[k] for k in group if k in n})
            ):
                return self._error(
                    pn,
                    f"{pw}/{keyword}",
                    f"'{keyword}' changed or was added; Nucleus cannot prove this change compatible.",
                )
        unknown = sorted(set(w) - _KNOWN)
        if unknown:
            return self._error(
                pn, f"{pw}/{unknown[0]}", f"Unknown keyword '{unknown[0]}'; Nucleus cannot reason about it."
            )

        w_values = _finite_values(w)
        if w_values is not None:
            domain = self._enumerate(n)
            if domain is None:
                return self._error(
                    pn,
                    pw + ("/const" if "const" in w else "/enum"),
                    f"The {wn} schema allows only {_show(w_values)}, but the {nn} one accepts other values.",
                )
            return self._values_inside(domain, n, pn, w, pw)

        return self._by_type(n, pn, w, pw, depth)

    def _values_inside(self, values, n, pn, w, pw) -> list[Incompatibility]:
        nn, wn = self._names()
        errors = []
        for value in values:
            if not self._accepts(self.narrow, value, n):
                continue  # enum values the narrow schema rejects anyway (e.g. by its type)
            if not self._accepts(self.wide, value, w):
                errors += self._error(
                    pn, pw, f"{_show([value])} is valid under the {nn} schema but not under the {wn} one."
                )
        return errors

    def _enumerate(self, n) -> list | None:
        """Every value n can accept, when that is a small set (booleans and null)."""
        types = _types(n)
        if types is None or not types <= {"boolean", "null"}:
            return None
        domain = []
        if "boolean" in types:
            domain += [True, False]
        if "null" in types:
            domain.append(None)
        return domain

    def _inside_some(self, n, pn, w, pw, word, depth) -> list[Incompatibility]:
        nn, wn = self._names()
        rest = {k: v for k, v in w.items() if k != word}
        errors = self.subset(n, pn, rest, pw, depth + 1) if _constraining(rest) else []
        for index, branch in enumerate(w[word]):
            if not self.subset(n, pn, branch, f"{pw}/{word}/{index}", depth + 1):
                return errors
        return errors + self._error(
            pn,
            f"{pw}/{word}",
            f"Documents of the {nn} schema do not all fit one branch of the {wn} schema's {word}.",
        )

    def _inside_one(self, n, pn, w, pw, depth) -> list[Incompatibility]:
        nn, wn = self._names()
        rest = {k: v for k, v in w.items() if k != "oneOf"}
        errors = self.subset(n, pn, rest, pw, depth + 1) if _constraining(rest) else []
        branches = w["oneOf"]
        for index, branch in enumerate(branches):
            if self.subset(n, pn, branch, f"{pw}/oneOf/{index}", depth + 1):
                continue
            others = [b for j, b in enumerate(branches) if j != index]
            if all(self.disjoint(n, other) for other in others):
                return errors
        return errors + self._error(
            pn,
            f"{pw}/oneOf",
            f"Cannot prove that every document of the {nn} schema matches exactly one branch of the {wn} "
            "schema's oneOf.",
        )

    # --- disjointness: no document is valid under both ------------------------------------------

    def disjoint(self, a, b) -> bool:
        """True only if provably no document satisfies both a (narrow side) and b (wide side)."""
        self.budget.spend()
        a = self._deref(a, "", self.narrow)[0]
        b = self._deref(b, "", self.wide)[0]
        if _is_false(a) or _is_false(b):
            return True
        ta, tb = _types(a), _types(b)
        if ta is not None and tb is not None and not _types_overlap(ta, tb):
            return True
        a_values, b_values = _finite_values(a), _finite_values(b)
        if a_values is not None:
            return all(
                not self._accepts(self.narrow, v, a) or not self._accepts(self.wide, v, b) for v in a_values
            )
        if b_values is not None:
            return all(
                not self._accepts(self.wide, v, b) or not self._accepts(self.narrow, v, a) for v in b_values
            )
        a_props, b_props = a.get("properties", {}), b.get("properties", {})
        a_is_object = ta is not None and ta == {"object"}
        for name in set(a.get("required", [])) & set(a_props) & set(b_props):
            if a_is_object and self.disjoint(a_props[name], b_props[name]):
                return True
        return False

    # --- per type --------------------------------------------------------------------------------

    def _by_type(self, n, pn, w, pw, depth) -> list[Incompatibility]:
        nn, wn = self._names()
        n_types, w_types = _types(n), _types(w)
        if w_types is not None:
            if n_types is None:
                return self._error(
                    pn,
                    f"{pw}/type",
                    f"The {wn} schema accepts only {_show_types(w_types)}, but the {nn} one accepts any "
                    "type.",
                )
            for t in sorted(n_types):
                if not (t in w_types or (t == "integer" and "number" in w_types)):
                    return self._error(
                        pn, f"{pw}/type", f"The {nn} schema accepts {t} values, which the {wn} one rejects."
                    )
        errors = []
        for t in sorted(n_types) if n_types is not None else JSON_TYPES:
            if t in ("integer", "number"):
                errors += self._numbers(n, pn, w, pw, integer=(t == "integer"))
            elif t == "string":
                errors += self._strings(n, pn, w, pw)
            elif t in ("array", "object"):
                self.doc_depth += 1  # the comparisons below are about items or property values
                try:
                    compare = self._arrays if t == "array" else self._objects
                    errors += compare(n, pn, w, pw, depth)
                finally:
                    self.doc_depth -= 1
        return errors

    def _numbers(self, n, pn, w, pw, integer: bool) -> list[Incompatibility]:
        nn, wn = self._names()
        errors = []
        for side in ("low", "high"):
            nb, wb = _bound(n, side, integer), _bound(w, side, integer)
            if wb is None:
                continue
            keyword = "minimum" if side == "low" else "maximum"
            if "exclusive" + keyword.capitalize() in w and keyword not in w:
                keyword = "exclusive" + keyword.capitalize()
            if nb is None or not _bound_within(nb, wb, side):
                limit = "lower" if side == "low" else "upper"
                errors += self._error(
                    pn,
                    f"{pw}/{keyword}",
                    f"The {wn} schema has a tighter {limit} bound than the {nn} one accepts.",
                )
        if "multipleOf" in w and not _multiple_within(n.get("multipleOf"), w["multipleOf"], integer):
            errors += self._error(
                pn,
                f"{pw}/multipleOf",
                f"The {wn} schema requires multiples of {w['multipleOf']}, which the {nn} one does not "
                "guarantee.",
            )
        return errors

    def _strings(self, n, pn, w, pw) -> list[Incompatibility]:
        nn, wn = self._names()
        errors = []
        if "minLength" in w and n.get("minLength", 0) < w["minLength"]:
            errors += self._error(
                pn,
                f"{pw}/minLength",
                f"The {wn} schema requires strings of at least {w['minLength']} characters; the {nn} one "
                "allows shorter.",
            )
        if "maxLength" in w and ("maxLength" not in n or n["maxLength"] > w["maxLength"]):
            errors += self._error(
                pn,
                f"{pw}/maxLength",
                f"The {wn} schema allows at most {w['maxLength']} characters; the {nn} one allows longer "
                "strings.",
            )
        if "pattern" in w and n.get("pattern") != w["pattern"]:
            errors += self._error(
                pn,
                f"{pw}/pattern",
                f"The {wn} schema requires the pattern {w['pattern']!r}; Nucleus cannot prove that every "
                f"string the {nn} one accepts matches it.",
            )
        return errors

    def _arrays(self, n, pn, w, pw, depth) -> list[Incompatibility]:
        nn, wn = self._names()
        errors = []
        n_min, w_min = n.get("minItems", 0), w.get("minItems", 0)
        n_prefix, w_prefix = n.get("prefixItems", []), w.get("prefixItems", [])
        n_rest, w_rest = n.get("items", True), w.get("items", True)
        n_max = n.get("maxItems")
        # pointers in each side's own spelling: draft-07 tuples are `items` plus `additionalItems`
        n_tuple, n_more = _array_keywords(n, self.narrow)
        w_tuple, w_more = _array_keywords(w, self.wide)
        if _is_false(n_rest):
            n_max = len(n_prefix) if n_max is None else min(n_max, len(n_prefix))
        if w_min > n_min:
            errors += self._error(
                pn,
                f"{pw}/minItems",
                f"The {wn} schema requires at least {w_min} items; the {nn} one allows fewer.",
            )
        if "maxItems" in w and (n_max is None or n_max > w["maxItems"]):
            errors += self._error(
                pn,
                f"{pw}/maxItems",
                f"The {wn} schema allows at most {w['maxItems']} items; the {nn} one allows more.",
            )
        if w.get("uniqueItems") and not n.get("uniqueItems") and (n_max is None or n_max > 1):
            errors += self._error(
                pn,
                f"{pw}/uniqueItems",
                f"The {wn} schema requires unique items; the {nn} one allows repeats.",
            )
        positions = max(len(n_prefix), len(w_prefix))
        if n_max is not None:
            positions = min(positions, n_max)
        for index in range(positions):
            n_item = n_prefix[index] if index < len(n_prefix) else n_rest
            w_item = w_prefix[index] if index < len(w_prefix) else w_rest
            n_path = f"{pn}/{n_tuple}/{index}" if index < len(n_prefix) else f"{pn}/{n_more}"
            w_path = f"{pw}/{w_tuple}/{index}" if index < len(w_prefix) else f"{pw}/{w_more}"
            errors += self.subset(n_item, n_path, w_item, w_path, depth + 1)
        if n_max is None or n_max > max(len(w_prefix), len(n_prefix)):
            errors += self.subset(n_rest, f"{pn}/{n_more}", w_rest, f"{pw}/{w_more}", depth + 1)
        return errors

    def _objects(self, n, pn, w, pw, depth) -> list[Incompatibility]:
        nn, wn = self._names()
        errors = []
        n_props, w_props = n.get("properties", {}), w.get("properties", {})
        n_patterns, w_patterns = n.get("patternProperties", {}), w.get("patternProperties", {})
        n_extra, w_extra = n.get("additionalProperties", True), w.get("additionalProperties", True)
        n_required, w_required = set(n.get("required", [])), set(w.get("required", []))

        for name in sorted(w_required - n_required):
            errors += self._error(
                pn,
                f"{pw}/required",
                f"The {wn} schema requires property '{name}', which documents valid under the {nn} schema "
                "may lack.",
            )
        if "minProperties" in w and n.get("minProperties", len(n_required)) < w["minProperties"]:
            errors += self._error(
                pn,
                f"{pw}/minProperties",
                f"The {wn} schema requires at least {w['minProperties']} properties; the {nn} one allows "
                "fewer.",
            )
        if "maxProperties" in w:
            n_max = n.get("maxProperties")
            if n_max is None and _is_false(n_extra) and not n_patterns:
                n_max = len(n_props)
            if n_max is None or n_max > w["maxProperties"]:
                errors += self._error(
                    pn,
                    f"{pw}/maxProperties",
                    f"The {wn} schema allows at most {w['maxProperties']} properties; the {nn} one allows "
                    "more.",
                )

        for pattern in (*n_patterns, *w_patterns):
            self.budget.spend()
            problem = pattern_problem(pattern)
            if problem is not None:  # only in a version stored before the definition check refused it
                return errors + self._error(
                    pn,
                    f"{pw}/patternProperties",
                    f"A patternProperties pattern cannot be analysed: {json.dumps(pattern)} {problem}",
                )

        # each named property: what the narrow side allows there must fit what the wide side requires;
        # names are matched by the engine and the rules of record validation (schemas/patterns.py)
        for name in sorted(set(n_props) | set(w_props)):
            if name in n_props:
                n_schema, n_path = n_props[name], f"{pn}/properties/{_escape(name)}"
            else:
                matching = [p for p in n_patterns if self._matches(p, name)]
                if matching:
                    n_schema, n_path = (
                        n_patterns[matching[0]],
                        f"{pn}/patternProperties/{_escape(matching[0])}",
                    )
                else:
                    n_schema, n_path = n_extra, f"{pn}/additionalProperties"
            if _is_false(n_schema):
                continue
            w_parts = []
            if name in w_props:
                w_parts.append((w_props[name], f"{pw}/properties/{_escape(name)}"))
            w_parts += [
                (w_patterns[p], f"{pw}/patternProperties/{_escape(p)}")
                for p in w_patterns
                if self._matches(p, name)
            ]
            if not w_parts:
                w_parts.append((w_extra, f"{pw}/additionalProperties"))
            for w_schema, w_path in w_parts:
                found = self.subset(n_schema, n_path, w_schema, w_path, depth + 1)
                if found and name not in n_props and _is_true(n_schema):
                    found = self._error(
                        n_path,
                        w_path,
                        f"Property '{name}' is constrained by the {wn} schema, but the {nn} schema is open "
                        "(it allows additional properties), so its documents may hold any value there.",
                    )
                errors += found

        # every other property name the narrow side allows
        if _is_false(n_extra) and not n_patterns:
            return errors
        if w_patterns and set(w_patterns) != set(n_patterns):
            return errors + self._error(
                pn,
                f"{pw}/patternProperties",
                f"The patternProperties of the {wn} schema differ from the {nn} one's; Nucleus cannot prove "
                "which names they match.",
            )
        for pattern, n_schema in n_patterns.items():
            target = (
                (w_patterns[pattern], f"{pw}/patternProperties/{_escape(pattern)}")
                if pattern in w_patterns
                else (w_extra, f"{pw}/additionalProperties")
            )
            errors += self.subset(
                n_schema, f"{pn}/patternProperties/{_escape(pattern)}", target[0], target[1], depth + 1
            )
        if not _is_false(n_extra):
            found = self.subset(
                n_extra, f"{pn}/additionalProperties", w_extra, f"{pw}/additionalProperties", depth + 1
            )
            if found and _is_true(n_extra):
                found = self._error(
                    f"{pn}/additionalProperties",
                    f"{pw}/additionalProperties",
                    f"The {nn} schema allows additional properties of any value, which the {wn} schema "
                    "restricts or forbids.",
                )
            errors += found
        return errors


def _array_keywords(schema: dict, side: _Side) -> tuple[str, str]:
    """The keywords (tuple, rest) of a normalized array schema as its draft spells them."""
    if side.draft07 and "prefixItems" in schema:  # only _norm puts prefixItems into a draft-07 schema
        return "items", "additionalItems"
    return "prefixItems", "items"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _show(values) -> str:
    return ", ".join(json.dumps(v)[:80] for v in values[:10]) + (" ..." if len(values) > 10 else "")


def _show_types(types) -> str:
    return " or ".join(sorted(types))


def _types_overlap(a: set[str], b: set[str]) -> bool:
    def expand(types):
        return types | ({"integer"} if "number" in types else set())

    return bool(expand(a) & expand(b))


def _is_power_of_two(value: Fraction) -> bool:
    """Whether value is 2**k for some integer k (positive, zero or negative)."""
    top, bottom = value.numerator, value.denominator
    return top > 0 and (top == 1 or bottom == 1) and top & (top - 1) == 0 and bottom & (bottom - 1) == 0


def _multiple_within(narrow, wide, integer: bool) -> bool:
    """Whether every number the narrow side accepts (a multiple of `narrow`, or with narrow None an
    integer when `integer`) is a multiple of `wide` for both validators Nucleus uses.

    jsonschema-rs checks multiples exactly, in decimal. Python's jsonschema does too for an integer
    multipleOf (`x % m`), but for a float multipleOf it divides in binary floating point and asks whether
    the rounded quotient is an integer: 0.3 is then not a multiple of 0.1, 2e307 is a multiple of 0.2 but
    not of 0.1 (the second quotient overflows and is checked exactly), and 5e-324 is a multiple of 2.0
    (the quotient rounds to 0) but not of 1.0. So beyond the exact rule this asks, for a float `wide`,
    that the narrow side guarantees exact multiples of a number that `wide` divides exactly in binary:
    then the quotient is an exact integer, and stays one when rounded or recomputed exactly.
    """
    if narrow is None and not integer:
        return False
    narrow = 1 if narrow is None else narrow
    if isinstance(narrow, float) and isinstance(wide, float) and narrow == wide:
        return True  # the same check on both sides
    dn, dw = _fraction(narrow), _fraction(wide)
    if dn is None or dw is None or (dn / dw).denominator != 1:
        return False  # not even an exact decimal multiple
    bn, bw = Fraction(narrow), Fraction(wide)  # the exact binary values Python computes with
    # exact multiples of bn: x % m with an integer m; x / m with a float m that is a power of two no
    # greater than 1 (such a division is exact: it cannot underflow, and overflow is checked exactly)
    exact = not isinstance(narrow, float) or (bn <= 1 and _is_power_of_two(bn))
    if not exact or (bn / bw).denominator != 1:
        return False
    # a float `wide` above 2 that is no power of two: an integer x above 2**53 is rounded before the
    # division, and the rounded x need not be a multiple of bn
    return not isinstance(wide, float) or bw <= 2 or _is_power_of_two(bw)


def _bound(schema: dict, side: str, integer: bool):
    """The effective (value, exclusive) lower or upper bound of a schema, as Fractions."""
    inclusive_key, exclusive_key = (
        ("minimum", "exclusiveMinimum") if side == "low" else ("maximum", "exclusiveMaximum")
    )
    candidates = []
    if isinstance(schema.get(inclusive_key), int | float):
        candidates.append((_fraction(schema[inclusive_key]), False))
    if isinstance(schema.get(exclusive_key), int | float) and not isinstance(schema.get(exclusive_key), bool):
        candidates.append((_fraction(schema[exclusive_key]), True))
    candidates = [c for c in candidates if c[0] is not None]
    if not candidates:
        return None
    if integer:  # integers: turn every bound into an inclusive integer bound
        ints = []
        for value, exclusive in candidates:
            if side == "low":
                ints.append(math.floor(value) + 1 if exclusive else math.ceil(value))
            else:
                ints.append(math.ceil(value) - 1 if exclusive else math.floor(value))
        return (Fraction(max(ints) if side == "low" else min(ints)), False)
    if side == "low":
        return max(candidates, key=lambda c: (c[0], c[1]))
    return min(candidates, key=lambda c: (c[0], not c[1]))


def _bound_within(narrow, wide, side: str) -> bool:
    (nv, nx), (wv, wx) = narrow, wide
    if side == "low":
        return nv > wv or (nv == wv and (nx or not wx))
    return nv < wv or (nv == wv and (nx or not wx))


def _merge(a: dict, b: dict) -> dict | None:
    """A schema accepting at least what a AND b accept, or None when it cannot tell.

    Used only on the narrow side, where widening is sound: merged `properties` make an
    `additionalProperties` apply to fewer names, which only widens.
    """
    for group in _GROUPS:  # e.g. `if` from one conjunct and `then` from another would act together
        a_part, b_part = ({k: s[k] for k in group if k in s} for s in (a, b))
        if a_part and b_part and canonical(a_part) != canonical(b_part):
            return None
    merged = dict(a)
    for name, value in b.items():
        if name not in merged:
            merged[name] = value
        elif name == "required":
            merged[name] = sorted(set(merged[name]) | set(value))
        elif name == "properties":
            props = dict(merged[name])
            for prop, schema in value.items():
                props[prop] = {"allOf": [props[prop], schema]} if prop in props else schema
            merged[name] = props
        elif name == "type":
            left, right = _types(merged), _types(b)
            both = {t for t in left if t in right or (t == "integer" and "number" in right)}
            both |= {t for t in right if t == "integer" and "number" in left}
            merged[name] = sorted(both) if both else []
            if not both:
                return {"not": {}}
        elif name in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
            merged[name] = max(merged[name], value)
        elif name in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
            merged[name] = min(merged[name], value)
        elif name in _PURE_ANNOTATIONS:
            continue  # two titles: neither changes what the merged schema accepts
        elif canonical(merged[name]) != canonical(value):
            return None  # e.g. two additionalProperties: neither can be judged apart from its siblings
    return merged


def _merge_all(schema: dict, deref) -> dict | None:
    """Fold allOf into one schema when every conjunct merges cleanly, else None."""
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for branch in schema["allOf"]:
        branch = deref(branch)
        if "allOf" in branch:
            return None
        merged = _merge(merged, branch)
        if merged is None:
            return None
    return merged


# --- the public questions --------------------------------------------------------------------------


def subschema_errors(
    narrow, wide, *, narrow_name="old", wide_name="new", new_is_wide=True, budget: int = DEFAULT_BUDGET
) -> list[Incompatibility]:
    """Why `wide` may reject a document that `narrow` accepts; empty when it provably never does.

    Takes at most `budget` steps of work; past them the answer is one error: too complex to prove.
    """
    return _subschema_errors(narrow, wide, narrow_name, wide_name, new_is_wide, _Budget(budget))


def _subschema_errors(narrow, wide, narrow_name, wide_name, new_is_wide, budget: _Budget):
    try:
        checker = _Checker(_Side(narrow, narrow_name), _Side(wide, wide_name), new_is_wide, budget)
        return _dedupe(checker.subset(narrow, "", wide, ""))
    except SchemaProblem as exc:
        return [Incompatibility(exc.path, exc.message)]
    except RecursionError:
        return [
            Incompatibility(
                "", "The schemas nest too deeply to be compared; treating the change as incompatible."
            )
        ]
    except _BudgetExhausted:
        return [_too_complex(budget)]


def _too_complex(budget: _Budget) -> Incompatibility:
    return Incompatibility(
        "",
        f"The change is too complex to prove compatible: comparing the schemas needs more than the "
        f"checker's budget of {budget.total} steps, so Nucleus treats it as incompatible.",
    )


def _dedupe(errors: list[Incompatibility]) -> list[Incompatibility]:
    seen, unique = set(), []
    for error in errors:
        if error not in seen:
            seen.add(error)
            unique.append(error)
    return unique


def compatibility_errors(
    mode: str, new, previous: list, *, budget: int = DEFAULT_BUDGET
) -> list[Incompatibility]:
    """Incompatibilities of `new` against `previous` (oldest first) under a registry mode.

    All the comparisons of one question share `budget` steps of work (see subschema_errors).
    """
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}")
    if mode == "NONE" or not previous:
        return []
    against = previous if mode.endswith("_TRANSITIVE") else previous[-1:]
    first_version = len(previous) - len(against) + 1
    shared = _Budget(budget)
    errors: list[Incompatibility] = []
    for offset, old in enumerate(against):
        label = f"version {first_version + offset}"
        if mode.startswith(("BACKWARD", "FULL")):
            errors += _subschema_errors(old, new, label, "new", True, shared)
        if mode.startswith(("FORWARD", "FULL")):
            errors += _subschema_errors(new, old, "new", label, False, shared)
        if shared.left < 0:
            break  # the rest could only repeat that the question is too complex
    return _dedupe(errors)
