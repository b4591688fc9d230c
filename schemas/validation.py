"""Validating record data against schema versions, with validators compiled once and reused.

Validators are compiled by jsonschema-rs (hundreds of times faster than pure Python on typical
records) and cached per process by fingerprint: a version is immutable, so its fingerprint names
exactly one definition, and the cache never needs invalidating. Formats are annotations, as in the
compatibility checker; references are local only (checked at registration), so nothing is fetched.
Patterns run on the linear-time engine of schemas/patterns.py, never a backtracking one.
"""

import functools
import json

import jsonschema_rs
from jsonschema import Draft7Validator

from core.errors import Conflict
from schemas.compat import SchemaProblem, validator_class
from schemas.patterns import PATTERN_OPTIONS

MAX_ERRORS = 20


def _pointer(parts) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _refuse_remote(uri: str):
    raise ValueError(f"Nucleus never fetches schemas ({uri})")


@functools.lru_cache(maxsize=1024)
def _compiled(fingerprint: str, definition_text: str):
    definition = json.loads(definition_text)
    cls = (
        jsonschema_rs.Draft7Validator
        if validator_class(definition) is Draft7Validator
        else jsonschema_rs.Draft202012Validator
    )
    try:
        return cls(
            definition, validate_formats=False, retriever=_refuse_remote, pattern_options=PATTERN_OPTIONS
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
        reason = str(getattr(exc, "message", exc)).splitlines()[0]
        raise SchemaProblem(
            f"Not a valid JSON Schema: {reason}", _pointer(getattr(exc, "instance_path", []))
        ) from None


_by_fingerprint: dict = {}


def compiled_validator(fingerprint: str, definition):
    """The compiled validator of a definition (compiled on first use in this process).

    Raises SchemaProblem for a definition jsonschema-rs cannot compile (registration refuses those).
    """
    validator = _by_fingerprint.get(fingerprint)
    if validator is None:
        if callable(definition):
            definition = definition()
        validator = _compiled(fingerprint, json.dumps(definition, sort_keys=True))
        if len(_by_fingerprint) < 4096:
            _by_fingerprint[fingerprint] = validator
    return validator


def stored_validator(fingerprint: str, definition):
    """compiled_validator for a stored version: one that cannot compile refuses (409) what needs it.

    Only a version stored by an earlier release, which checked less, can fail here (a lookahead in a
    pattern, say: the linear-time engine does not run it).
    """
    try:
        return compiled_validator(fingerprint, definition)
    except SchemaProblem as exc:
        raise Conflict(
            f"This schema version cannot be evaluated ({exc.message}); it was stored by an earlier release. "
            "Register a new version without what it names.",
            code="schema_unsupported",
        ) from None


def data_errors(validator, data, *, path: str = "/data") -> list[dict]:
    """Validation errors of data as {"path", "message"} with JSON Pointers under path; [] when valid."""
    if validator.is_valid(data):
        return []
    errors = []
    for error in validator.iter_errors(data):
        errors.append({"path": path + _pointer(error.instance_path), "message": error.message})
        if len(errors) >= MAX_ERRORS:
            break
    return errors
