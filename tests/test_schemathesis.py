"""Schemathesis against a real server: every operation of /api/schema/, no 5xx, answers as documented.

pytest-django's `live_server` (a real HTTP server on the test database) serves the OpenAPI document;
schemathesis loads it from there and calls every operation with the requests it derives from the
document: its examples, its coverage cases (boundary and just-invalid values of every parameter and
body field, and unexpected methods) and Hypothesis fuzzing, valid (positive) and invalid (negative).
Every request carries the token of a service that owns a records collection (`items`), a stream
(`feed`) and a schema (`item`), so that requests reach real code instead of stopping at a 404: path
parameters default to those names, and fuzzing also draws a collection the service may only read, one
it may not see, names of the wrong kind and generated names, and puts existing names into bodies. A
valid Idempotency-Key is made unique per request, or every request after the first that drew the same
key would be refused as a reused key before reaching the view.

Checks on every response: no 5xx (not_a_server_error), a documented status code
(status_code_conformance), a documented content type (content_type_conformance) and a body matching
the documented schema (response_schema_conformance). None is excluded for any operation.

Deterministic and bounded: a fixed seed, derandomized generation, no example database, at most
MAX_EXAMPLES fuzzed requests per operation, and long-polls (`events?wait=`) cut short.
"""

import math
import re
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.python._constants.orchestrator import make_constants_value_source
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core import services
from core.models import Collection, Grant, Record
from schemas import services as schema_services
from schemas.models import Schema
from tests.actors import TEST_ACTOR

SEED = 20260601
MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# What the token's service works with. It owns ITEMS, FEED, EMPTY (a collection without records) and
# SCHEMA; it may read SHARED (owned by another service) and may not see HIDDEN; THEIRS is another
# service's schema.
ITEMS, FEED, SHARED, HIDDEN, EMPTY = "items", "feed", "shared", "hidden", "empty"
SCHEMA, THEIRS = "item", "theirs"

# The value each path parameter has unless fuzzing draws another (schemathesis parameter overrides).
DEFAULTS = [
    (r"^/api/v1/collections/\{name\}/(events|consumers)/", {"path.name": FEED, "path.consumer": "worker"}),
    (r"^/api/v1/collections/\{name\}/", {"path.name": ITEMS, "path.key": "a", "path.service": "writer"}),
    (r"^/api/v1/schemas/\{name\}/", {"path.name": SCHEMA, "path.version": "1"}),
]
# What fuzzing draws from, besides the default and a generated value.
CHOICES = {
    "name": [ITEMS, FEED, SHARED, HIDDEN, EMPTY],
    "key": ["a", "b", "bulk"],
    "consumer": ["worker"],
    "service": ["reader", "writer", "outsider"],
}
SCHEMA_CHOICES = {"name": [SCHEMA, THEIRS], "version": ["1", "latest", "2"]}
MAX_WAIT_SECONDS = 0.1  # events?wait= long-polls up to 30 s
IDEMPOTENCY_KEY = re.compile(r"[!-~][ -~]{0,254}")


def ensure_state(owner, other) -> None:
    """The collections, grants, records, events and schemas above; whatever a request removed is back."""
    if not Collection.objects.filter(name=ITEMS).exists():
        services.collection_create(actor=TEST_ACTOR, name=ITEMS, owner=owner)
    items = Collection.objects.get(name=ITEMS)
    for service_name, access in (("reader", "read"), ("writer", "write")):
        if not Grant.objects.filter(collection=items, service__name=service_name).exists():
            services.grant_set(actor=TEST_ACTOR, collection=items, service_name=service_name, access=access)
    for key in ("a", "b"):
        if not Record.objects.filter(collection=items, key=key).exists():
            services.record_put(collection=items, key=key, data={"n": 1, "tags": ["x"]}, actor=TEST_ACTOR)
    if not Collection.objects.filter(name=FEED).exists():
        feed = services.collection_create(actor=TEST_ACTOR, name=FEED, owner=owner, kind="stream")
        services.stream_append(stream=feed, events=[{"type": "made", "data": {"n": 1}}], actor=TEST_ACTOR)
    if not Collection.objects.filter(name=EMPTY).exists():
        services.collection_create(actor=TEST_ACTOR, name=EMPTY, owner=owner)
    if not Collection.objects.filter(name=SHARED).exists():
        shared = services.collection_create(actor=TEST_ACTOR, name=SHARED, owner=other)
        services.grant_set(actor=TEST_ACTOR, collection=shared, service_name=owner.name, access="read")
        services.record_put(collection=shared, key="a", data={"n": 2}, actor=TEST_ACTOR)
    if not Collection.objects.filter(name=HIDDEN).exists():
        services.collection_create(actor=TEST_ACTOR, name=HIDDEN, owner=other)
    if not Schema.objects.filter(name=SCHEMA).exists():
        schema = schema_services.schema_create(name=SCHEMA, owner=owner)
        schema_services.schema_version_register(
            schema=schema, definition={"type": "object"}, actor=TEST_ACTOR
        )
    if not Schema.objects.filter(name=THEIRS).exists():
        schema_services.schema_create(name=THEIRS, owner=other)


def _steered(path_parameters: dict | None, choices: dict):
    if not isinstance(path_parameters, dict) or not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {
            name: st.sampled_from([value, *choices[name]])
            | st.text(min_size=1, max_size=20).map(lambda text: quote(text, safe=""))
            if name in choices
            else st.just(value)
            for name, value in path_parameters.items()
        }
    )


def _with_path(case, path_parameters):
    case.path_parameters = path_parameters
    return case


def _short_wait(query):
    if not isinstance(query, dict):
        return query
    try:
        seconds = float(query.get("wait"))
    except (TypeError, ValueError):
        return query
    if math.isfinite(seconds) and seconds > MAX_WAIT_SECONDS:
        return {**query, "wait": MAX_WAIT_SECONDS}
    return query


def _fresh_idempotency_key(case, number: int) -> None:
    """A valid Idempotency-Key made unique to this request, so that it reaches the view.

    Generation draws the same few keys again and again; with a different body each time, every request
    after the first would be refused as a reused key (422) before the view ever saw it. Invalid keys
    are sent as generated.
    """
    key = case.headers.get("Idempotency-Key") if case.headers else None
    if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = f"{key[:200]}-{number}"


@pytest.fixture
def nucleus(live_server, owner, reader, writer, outsider):
    """The live server's URL and the owner's token, with the state ensure_state makes."""
    ensure_state(owner.service, outsider.service)
    return live_server.url, owner, outsider


@pytest.fixture
def api_schema(nucleus):
    url, owner, _ = nucleus
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": url,
            "headers": {"Authorization": f"Bearer {owner.token}"},
            "request-timeout": 30,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            # Fuzzing puts names that exist (or are free and valid) into bodies half of the time.
            "dictionaries": {
                "new-names": {"values": ["made", "made.one", "made_two-3"]},
                "services": {"values": ["reader", "writer", "outsider", "owner"]},
                "collections": {"values": [ITEMS, FEED, SHARED, HIDDEN]},
                "schemas": {"values": [SCHEMA, THEIRS]},
                "keys": {"values": ["a", "b", "c"]},
            },
            "parameters": {
                "body.name": {"dictionary": "new-names", "probability": 0.5},
                "body.service": {"dictionary": "services", "probability": 0.5},
                "body.change_stream": {"dictionary": "collections", "probability": 0.5},
                "body.schema": {"dictionary": "schemas", "probability": 0.5},
                "body.operations[*].collection": {"dictionary": "collections", "probability": 0.7},
                "body.operations[*].key": {"dictionary": "keys", "probability": 0.5},
                "body.records[*].key": {"dictionary": "keys", "probability": 0.3},
            },
            "operations": [
                {"include-path-regex": pattern, "parameters": parameters} for pattern, parameters in DEFAULTS
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/", config=config)

    @schema.hook
    def flatmap_case(context, case):
        # A case hook: path parameter hooks run before the defaults are applied, and would be overruled.
        choices = SCHEMA_CHOICES if context.operation.path.startswith("/api/v1/schemas/") else CHOICES
        return _steered(case.path_parameters, choices).map(lambda parameters: _with_path(case, parameters))

    @schema.hook
    def map_query(context, query):
        return _short_wait(query) if context.operation.path.endswith("/events/") else query

    return schema


def operation_tests(schema, test_func):
    """(operation, Hypothesis test) for every operation, built as schemathesis' pytest loader builds them.

    schemathesis.pytest.from_fixture would run them, but it renames pytest's node through an attribute
    (`_nodeid`) that pytest 9.2 no longer has; the tests are the same, reported as subtests here.
    """
    feedback = FeedbackSources(constants_value_source=make_constants_value_source(schema))
    for result in schema.get_all_operations():
        operation = result.ok()  # an operation the document cannot describe fails the test here
        test = build_operation_test(
            config=schema.config, operation=operation, test_func=test_func, given_kwargs={}, feedback=feedback
        )
        yield operation, test


@pytest.mark.slow(seconds=65)
@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_as_documented(api_schema, nucleus, subtests):
    _, owner, other = nucleus
    answered: dict[str, set[int]] = {}
    sent: list[str] = []

    def call(case):
        ensure_state(owner.service, other.service)
        _fresh_idempotency_key(case, len(sent))
        sent.append(case.operation.label)
        response = case.call_and_validate(checks=CHECKS)
        if response.request.method == case.operation.method.upper():  # not an unexpected-method probe
            answered.setdefault(case.operation.label, set()).add(response.status_code)

    for operation, test in operation_tests(api_schema, call):
        with subtests.test(msg=operation.label):
            test()

    # Every operation was called, and the service's own data was reached: each operation a service may
    # use answered 2xx at least once (backups and system/migrations are operators' and answer 403).
    assert len(answered) == len(list(api_schema.get_all_operations())) >= 37
    operators_only = ("/api/v1/backups/", "/api/v1/system/")
    unsuccessful = sorted(
        label
        for label, statuses in answered.items()
        if not label.split(" ", 1)[1].startswith(operators_only) and not any(200 <= s < 300 for s in statuses)
    )
    assert unsuccessful == []
