"""Client regular expressions: ECMA-262 syntax, run by one linear-time engine everywhere.

Record validation, the definition check and the compatibility checker all evaluate `pattern` and
`patternProperties` with Rust's `regex` crate, through jsonschema-rs with RegexOptions: finite
automata without backtracking, so a match costs time linear in the input whatever the pattern says.
A pattern must be ECMA-262 (jsonschema-rs's own `format: "regex"` check) and must compile within
PATTERN_SIZE_LIMIT: that refuses lookaround and backreferences, which no linear-time engine runs, and
bounds the per-character cost of a match, which grows with the compiled size. The distinct patterns of
one definition may weigh DEFINITION_PATTERNS_LIMIT together, which bounds the memory and the time their
compilation takes (docs/hardening.md, Regular expressions). A plain module with no Django imports.
"""

import functools

import jsonschema_rs

# The compiled size of one pattern, in bytes. Matching costs up to a constant times this per input
# character; with Rust's default (10 MiB) one pattern took minutes over a 500 KB string.
PATTERN_SIZE_LIMIT = 256 * 1024
PATTERN_OPTIONS = jsonschema_rs.RegexOptions(size_limit=PATTERN_SIZE_LIMIT)
# A pattern weighs the smallest of these sizes it compiles within (a compiled pattern takes about that
# much memory); the distinct patterns of one definition may weigh this much together.
_WEIGHTS = (1024, 4 * 1024, 16 * 1024, 64 * 1024, PATTERN_SIZE_LIMIT)
DEFINITION_PATTERNS_LIMIT = 4 * 1024 * 1024

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


def _compiles(pattern: str, options) -> bool:
    try:
        jsonschema_rs.Draft202012Validator({"pattern": pattern}, pattern_options=options)
    except jsonschema_rs.ValidationError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def pattern_weight(pattern: str) -> int | None:
    """The bytes pattern weighs on the linear-time engine, or None when Nucleus refuses it.

    Compiles it under growing size limits; a limit that is too small fails as soon as it is reached.
    """
    if not _ECMA_262.is_valid(pattern):
        return None
    for weight in _WEIGHTS:
        if _compiles(pattern, jsonschema_rs.RegexOptions(size_limit=weight)):
            return weight
    return None


def is_supported(pattern: str) -> bool:
    """Whether pattern is ECMA-262 and runs on the linear-time engine (the `regex` format of Nucleus)."""
    return pattern_weight(pattern) is not None


def pattern_problem(pattern: str) -> str | None:
    """Why Nucleus refuses pattern (the end of a sentence), or None when it accepts it."""
    if is_supported(pattern):
        return None
    if not _ECMA_262.is_valid(pattern):
        return "is not an ECMA-262 regular expression."
    # compiled only to name the reason: nothing ever matches with the backtracking engine
    if _compiles(pattern, jsonschema_rs.FancyRegexOptions(size_limit=PATTERN_SIZE_LIMIT)):
        return _LOOKAROUND
    return _TOO_LARGE


@functools.lru_cache(maxsize=64)  # each may hold up to PATTERN_SIZE_LIMIT of automata
def _matcher(pattern: str):
    if not is_supported(pattern):
        raise ValueError(f"The pattern {pattern!r} {pattern_problem(pattern)}")
    return jsonschema_rs.Draft202012Validator({"pattern": pattern}, pattern_options=PATTERN_OPTIONS)


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether pattern matches anywhere in text, exactly as record validation decides it.

    Raises ValueError for a pattern Nucleus refuses (the definition check refuses those).
    """
    return _matcher(pattern).is_valid(text)
