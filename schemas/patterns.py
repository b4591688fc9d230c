"""Client regular expressions: ECMA-262 syntax, run by one linear-time engine everywhere.

Record validation, the definition check and the compatibility checker all evaluate `pattern` and
`patternProperties` with Rust's `regex` crate, through jsonschema-rs with RegexOptions: finite
automata without backtracking, so a match costs time linear in the input whatever the pattern says.
A pattern must be ECMA-262 (jsonschema-rs's own `format: "regex"` check) and must compile within
PATTERN_SIZE_LIMIT: that refuses lookaround and backreferences, which no linear-time engine runs, and
bounds the per-character cost of a match, which grows with the compiled size (docs/hardening.md,
Regular expressions). A plain module with no Django imports.
"""

import functools

import jsonschema_rs

# The compiled size of one pattern, in bytes. Matching costs at most a constant times this per input
# character; with Rust's default (10 MiB) one pattern took minutes on a 500 KB string.
PATTERN_SIZE_LIMIT = 64 * 1024
PATTERN_OPTIONS = jsonschema_rs.RegexOptions(size_limit=PATTERN_SIZE_LIMIT)

_ECMA_262 = jsonschema_rs.validator_for({"format": "regex"}, validate_formats=True)
_LOOKAROUND = (
    "uses lookaround or a backreference, which only a backtracking engine runs; Nucleus runs patterns on "
    "a linear-time engine."
)
_TOO_LARGE = (
    f"compiles to more than {PATTERN_SIZE_LIMIT // 1024} KiB on Nucleus' linear-time engine, or uses a "
    "construct it lacks (such as [^], \\0 or a named backreference); a bounded repetition of a large "
    "class such as \\p{L}{1,50} is better written as \\p{L}* with minLength and maxLength."
)


@functools.lru_cache(maxsize=4096)
def _matcher(pattern: str):
    """A validator of {"pattern": pattern} on the linear-time engine, or None when it cannot compile."""
    if not _ECMA_262.is_valid(pattern):
        return None
    try:
        return jsonschema_rs.Draft202012Validator({"pattern": pattern}, pattern_options=PATTERN_OPTIONS)
    except jsonschema_rs.ValidationError:
        return None


def pattern_problem(pattern: str) -> str | None:
    """Why Nucleus refuses pattern (the end of a sentence), or None when it accepts it."""
    if _matcher(pattern) is not None:
        return None
    if not _ECMA_262.is_valid(pattern):
        return "is not an ECMA-262 regular expression."
    try:  # compiled only to name the reason: nothing ever matches with the backtracking engine
        jsonschema_rs.Draft202012Validator(
            {"pattern": pattern},
            pattern_options=jsonschema_rs.FancyRegexOptions(size_limit=PATTERN_SIZE_LIMIT),
        )
    except jsonschema_rs.ValidationError:
        return _TOO_LARGE
    return _LOOKAROUND


def is_supported(pattern: str) -> bool:
    """Whether pattern is ECMA-262 and runs on the linear-time engine (the `regex` format of Nucleus)."""
    return _matcher(pattern) is not None


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether pattern matches anywhere in text, exactly as record validation decides it.

    Raises ValueError for a pattern that is not supported (the definition check refuses those).
    """
    matcher = _matcher(pattern)
    if matcher is None:
        raise ValueError(f"The pattern {pattern!r} {pattern_problem(pattern)}")
    return matcher.is_valid(text)
