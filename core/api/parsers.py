"""A JSON parser that turns every kind of malformed body into a clear 400."""

import json
import re
from itertools import accumulate

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.errors import BadRequest

_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects in JSON text nest deeper than limit; linear in the text, never recursive."""
    if text.count("[") + text.count("{") <= limit:
        return False
    if '\\"' in text:  # an escaped quote, or an escaped backslash ending a string: drop both kinds
        text = text.replace("\\\\", "").replace('\\"', "")
    # What is left of the quotes alternates opening and closing: the even parts are outside strings.
    outside = "".join(text.split('"')[::2])
    brackets = _NOT_A_BRACKET.sub("", outside)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


class StrictJSONParser(JSONParser):
    """Strict JSON: no NaN or Infinity, an explicit nesting limit, a clear error for huge numbers."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The body is not valid UTF-8.")
        if not text.strip():
            raise ParseError("The body is empty; a JSON object was expected.")
        limit = settings.NUCLEUS_MAX_BODY_DEPTH
        if nests_deeper_than(text, limit):
            raise BadRequest(f"The JSON body nests deeper than {limit} levels.", code="body_too_deep")
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
            raise ParseError(f"The body is not valid JSON: {exc}")
