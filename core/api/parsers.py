"""A JSON parser that turns every kind of malformed body into a clear 400."""

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    """Strict JSON: no NaN or Infinity, a clear error for too deep nesting or huge numbers."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The body is not valid UTF-8.")
        if not text.strip():
            raise ParseError("The body is empty; a JSON object was expected.")
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise ParseError("The JSON body is nested too deeply.")
        except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
            raise ParseError(f"The body is not valid JSON: {exc}")
