"""Checks on record data that the database would otherwise reject with an error, or store badly."""

import json
import math
import re

from django.conf import settings

from core.errors import ContentTooLarge, ValidationFailed
from core.models import NAME_PATTERN


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def find_problem(value, path: str, depth: int, max_depth: int) -> tuple[str, str] | None:
    """The first value PostgreSQL's jsonb cannot hold faithfully, as (JSON Pointer, reason)."""
    if depth > max_depth and isinstance(value, dict | list):  # depth counts objects and arrays only
        return path, f"is nested deeper than {max_depth} levels."
    if isinstance(value, str):
        return _string_problem(value, path)
    if isinstance(value, float) and not math.isfinite(value):
        return path, "is not a finite number."
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}/{_escape(key)}"
            problem = _string_problem(key, child, what="key") or find_problem(
                item, child, depth + 1, max_depth
            )
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = find_problem(item, f"{path}/{index}", depth + 1, max_depth)
            if problem:
                return problem
    return None


def _string_problem(text: str, path: str, what: str = "string") -> tuple[str, str] | None:
    if text.isascii():
        return (path, f"{what} contains a NUL character (\\u0000).") if "\x00" in text else None
    if "\x00" in text:
        return path, f"{what} contains a NUL character (\\u0000)."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return path, f"{what} contains an unpaired surrogate, which is not valid Unicode."
    return None


def _nested_deeper_than(value, max_depth: int) -> bool:
    """Whether objects and arrays nest deeper than max_depth (value itself is level 1)."""
    level, containers = 1, [value]
    while containers:
        if level > max_depth:
            return True
        inner = []
        for container in containers:
            items = container.values() if isinstance(container, dict) else container
            inner += [item for item in items if isinstance(item, dict | list)]
        containers, level = inner, level + 1
    return False


def check_record_data(data, *, path: str = "/data") -> int:
    """Raise ValidationFailed unless data is a storable JSON object; returns its serialized size.

    The common case costs one serialization (which the size limit needs anyway) and a walk over the
    objects and arrays; only data that fails a quick test is searched value by value for the exact
    place and reason (find_problem).
    """
    if not isinstance(data, dict):
        raise ValidationFailed(
            "data must be a JSON object.", errors=[{"path": path, "message": "must be an object."}]
        )
    max_depth = settings.NUCLEUS_MAX_JSON_DEPTH
    try:
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        # JSON writes a NUL as \u0000; the test can also hit an escaped backslash before "u0000".
        suspect = b"\\u0000" in encoded or _nested_deeper_than(data, max_depth)
    except (ValueError, UnicodeEncodeError, RecursionError):  # non-finite numbers, lone surrogates
        encoded, suspect = b"", True
    if suspect:
        problem = find_problem(data, path, 1, max_depth)
        if problem:
            raise ValidationFailed(
                f"{problem[0]} {problem[1]}",
                code="invalid_data",
                errors=[{"path": problem[0], "message": problem[1]}],
            )
        encoded = encoded or json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    size = len(encoded)
    if size > settings.NUCLEUS_MAX_RECORD_BYTES:
        message = f"is {size} bytes serialized; the limit is {settings.NUCLEUS_MAX_RECORD_BYTES}."
        raise ContentTooLarge(
            f"{path} {message}", code="record_too_large", errors=[{"path": path, "message": message}]
        )
    return size


def merge_patch(target, patch):
    """Apply an RFC 7386 JSON merge patch to target and return the result (target is not changed)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


_NAME_RE = re.compile(NAME_PATTERN)


def check_collection_name(name, *, what: str = "collection") -> None:
    """Collections and schemas share one naming rule: dot-separated lower-case parts."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > 100:
        raise ValidationFailed(
            f"name must match {NAME_PATTERN} and be at most 100 characters.",
            code="invalid_name",
            errors=[{"path": "/name", "message": f"is not a valid {what} name."}],
        )
