"""The differential isolation test: nothing a schema's owner gets from the API depends on another
service's collection bound to its schema, nor on what that collection holds.

Two worlds are built from the same state, each inside a savepoint that is rolled back afterwards: the
owner's world alone (its schema `person`, its collection `mine` bound to it), and the same world plus
the outsider's collection `secret`, bound to `person` and holding records (several contents, each a
case). The owner then sends the same script of requests in both worlds: every schema-registry
endpoint (dry runs that probe the foreign records, registrations that they would fail), every
collection and record endpoint on its own collection, transactions, and every endpoint naming
`secret`. The responses (status, problem content type, the headers a client acts on, the body) must
be equal once timestamps and request ids are set aside. A test checks that the script covers every
schema, collection, record and transaction operation of the OpenAPI document.

What the test does not cover is written down in docs/isolation.md: names are one namespace, so
creating a collection named `secret` would tell the owner that the name is taken.
"""

import json
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from core import services as core_services
from schemas import services as schema_services
from tests.actors import TEST_ACTOR

pytestmark = pytest.mark.django_db

V1 = {"type": "object"}
V2 = {"type": "object", "properties": {"name": {"type": "string"}}}
REQUIRE_NAME = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def probe(guess: str) -> dict:
    """The issue's probe: fails only a record named bob whose ssn does not match guess."""
    return {
        "if": {"properties": {"name": {"const": "bob"}}, "required": ["name"]},
        "then": {"properties": {"ssn": {"pattern": guess}}},
    }


# What the foreign collection `secret` is pinned to and holds, per case.
FOREIGN = {
    "empty": (1, {}),
    "the probe's target": (
        1,
        {"bob": {"name": "bob", "ssn": "987-65-4321"}, "eve": {"name": "eve", "ssn": "123-45-6789"}},
    ),
    "records no later version accepts": (
        1,
        {
            f"r{i}": data
            for i, data in enumerate([{"name": 5}, {}, {"ssn": None}, {"name": ["x"]}, {"a": [1]}])
        },
    ),
    "keys the owner also uses": (1, {"ann": {"name": 1}, "bob": {"ssn": "987"}, "cy": {"age": "old"}}),
    "pinned to the latest version": (2, {"ann": {"name": "ann"}}),
    "many records": (1, {f"k{i:04d}": {"name": i} for i in range(300)}),
}


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)

    def send(self, client):
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in self.headers.items()}
        if self.body is None:
            return client.generic(self.method, self.path, **extra)
        return client.generic(
            self.method, self.path, json.dumps(self.body), content_type="application/json", **extra
        )


S = "/api/v1/schemas/person"
C = "/api/v1/collections"
MINE = f"{C}/mine"
SECRET = f"{C}/secret"


def _record_steps(base: str) -> list[Step]:
    """Every record endpoint of one collection, in an order where each finds what it needs."""
    return [
        Step("GET", f"{base}/records/"),
        Step("GET", f"{base}/records/?limit=1"),
        Step("GET", f"{base}/records/?where=%7B%22name%22%3A%22bob%22%7D"),
        Step("GET", f"{base}/records/?key_prefix=b"),
        Step(
            "POST", f"{base}/records/", {"key": "cy", "data": {"name": "cy"}}, {"Idempotency-Key": "shared"}
        ),
        Step(
            "POST", f"{base}/records/", {"key": "cy", "data": {"name": "cy"}}, {"Idempotency-Key": "shared"}
        ),
        Step("POST", f"{base}/records/", {"key": "dee", "data": {"age": 1}}),
        Step("POST", f"{base}/records/", {"key": "bob", "data": {"name": "bob"}}),
        Step("GET", f"{base}/records/ann/"),
        Step("GET", f"{base}/records/ann/", headers={"If-None-Match": '"1"'}),
        Step("GET", f"{base}/records/nobody/"),
        Step("PUT", f"{base}/records/ann/", {"data": {"name": "ann", "age": 4}}, {"If-Match": '"1"'}),
        Step("PUT", f"{base}/records/ann/", {"data": {"name": "ann"}}, {"If-Match": '"1"'}),
        Step("PUT", f"{base}/records/ann/", {"data": {"name": 5}}),
        Step("PATCH", f"{base}/records/bob/", {"data": {"age": 9}}),
        Step("PATCH", f"{base}/records/bob/", {"data": {"name": None}}),
        Step("DELETE", f"{base}/records/cy/"),
        Step("DELETE", f"{base}/records/cy/"),
        Step(
            "POST",
            f"{base}/records/bulk/",
            {
                "mode": "upsert",
                "records": [{"key": "ed", "data": {"name": "ed"}}, {"key": "bob", "data": {"name": "b"}}],
            },
        ),
        Step(
            "POST",
            f"{base}/records/bulk/",
            {"mode": "insert", "records": [{"key": "ed", "data": {"name": "e"}}]},
        ),
        Step("POST", f"{base}/records/bulk/", {"mode": "insert", "records": [{"key": "fy", "data": {}}]}),
        Step("GET", f"{base}/records/ann/history/"),
        Step("GET", f"{base}/records/cy/history/"),
        Step("POST", f"{base}/records/ann/revert/", {"version": 1}),
        Step("POST", f"{base}/records/cy/revert/", {"version": 1}),
        Step("POST", f"{base}/records/ann/revert/", {"version": 99}),
        Step("GET", f"{base}/records/"),
    ]


SCRIPT = [
    # the registry: reads, dry runs (the probes among them), changes of mode, registrations
    Step("GET", "/api/v1/schemas/"),
    Step("GET", f"{S}/"),
    Step("GET", f"{S}/versions/"),
    Step("GET", f"{S}/versions/1/"),
    Step("GET", f"{S}/versions/latest/"),
    Step("POST", f"{S}/compatibility/", {"definition": probe("^987")}),
    Step("POST", f"{S}/compatibility/", {"definition": probe("^123")}),
    Step("POST", f"{S}/compatibility/", {"definition": False}),
    Step("POST", f"{S}/compatibility/", {"definition": {"required": ["ssn"]}}),
    Step("POST", f"{S}/compatibility/", {"definition": {"properties": {"name": {"type": "integer"}}}}),
    Step("POST", f"{S}/compatibility/", {"definition": REQUIRE_NAME}),
    Step("PATCH", f"{S}/", {"description": "people"}),
    Step("PATCH", f"{S}/", {"compatibility": "FULL"}),
    Step("POST", f"{S}/compatibility/", {"definition": REQUIRE_NAME}),
    Step("POST", f"{S}/versions/", {"definition": REQUIRE_NAME}),
    Step("PATCH", f"{S}/", {"compatibility": "NONE"}),
    Step("POST", f"{S}/versions/", {"definition": False}),
    Step("POST", f"{S}/versions/", {"definition": {"required": ["ssn"]}}),
    Step("POST", f"{S}/versions/", {"definition": probe("^987")}),
    Step("POST", f"{S}/versions/", {"definition": probe("^123")}),
    Step("POST", f"{S}/versions/", {"definition": REQUIRE_NAME}),
    Step("POST", f"{S}/versions/", {"definition": REQUIRE_NAME}),
    Step("GET", f"{S}/versions/?limit=2"),
    Step("GET", f"{S}/"),
    Step("POST", "/api/v1/schemas/", {"name": "other"}),
    Step("POST", "/api/v1/schemas/other/versions/", {"definition": V1}),
    Step("GET", "/api/v1/schemas/"),
    # its own collection: settings, the binding and its pin, grants, every record endpoint
    Step("GET", f"{C}/"),
    Step("GET", f"{MINE}/"),
    *_record_steps(MINE),
    Step("PATCH", f"{MINE}/", {"schema_version": 3}),
    Step("POST", f"{MINE}/records/", {"key": "gil", "data": {"ssn": "1"}}),
    Step("PATCH", f"{MINE}/", {"schema_version": None}),
    Step("DELETE", f"{MINE}/records/gil/"),
    Step("PATCH", f"{MINE}/", {"schema_version": None}),
    Step("PATCH", f"{MINE}/", {"schema": None}),
    Step("PATCH", f"{MINE}/", {"schema": "person", "description": "mine"}),
    Step("PATCH", f"{MINE}/", {"schema": "other"}),
    Step("PATCH", f"{MINE}/", {"schema": "person", "schema_version": 2}),
    Step("GET", f"{MINE}/grants/"),
    Step("POST", f"{MINE}/grants/", {"service": "reader", "access": "read"}),
    Step("POST", f"{MINE}/grants/", {"service": "outsider", "access": "read"}),
    Step("GET", f"{MINE}/grants/"),
    Step("DELETE", f"{MINE}/grants/outsider/"),
    Step("DELETE", f"{MINE}/grants/nobody/"),
    Step("POST", f"{C}/", {"name": "mine.more", "schema": "person"}),
    Step("POST", f"{C}/", {"name": "mine.pinned", "schema": "person", "schema_version": 1}),
    Step("DELETE", f"{C}/mine.more/"),
    Step("GET", f"{C}/"),
    # transactions
    Step(
        "POST",
        "/api/v1/transactions/",
        {
            "operations": [
                {"op": "create", "collection": "mine", "key": "hal", "data": {"name": "hal"}},
                {"op": "patch", "collection": "mine", "key": "ann", "data": {"age": 5}},
                {"op": "delete", "collection": "mine", "key": "ed"},
            ]
        },
    ),
    Step(
        "POST",
        "/api/v1/transactions/",
        {"operations": [{"op": "put", "collection": "mine", "key": "ivy", "data": {"name": 1}}]},
    ),
    Step(
        "POST",
        "/api/v1/transactions/",
        {
            "operations": [
                {"op": "create", "collection": "mine", "key": "jo", "data": {"name": "jo"}},
                {"op": "create", "collection": "secret", "key": "jo", "data": {"name": "jo"}},
            ]
        },
    ),
    # the foreign collection, by name: every endpoint must answer as for a name that does not exist
    Step("GET", f"{SECRET}/"),
    Step("PATCH", f"{SECRET}/", {"schema_version": 1}),
    Step("DELETE", f"{SECRET}/"),
    Step("GET", f"{SECRET}/grants/"),
    Step("POST", f"{SECRET}/grants/", {"service": "owner", "access": "read"}),
    Step("DELETE", f"{SECRET}/grants/owner/"),
    *_record_steps(SECRET),
    Step("GET", f"{SECRET}/events/"),
    Step("POST", f"{SECRET}/events/", {"events": [{"type": "t", "data": {}}]}),
    Step("GET", f"{SECRET}/consumers/billing/"),
    Step("PUT", f"{SECRET}/consumers/billing/", {"offset": 0}),
    # and at the end, the registry again
    Step("GET", f"{S}/"),
    Step("GET", f"{S}/versions/"),
]

VOLATILE = {"created_at", "updated_at", "changed_at", "request_id"}
HEADERS = ("Content-Type", "ETag", "Location", "Idempotent-Replayed")


def normalised(value):
    if isinstance(value, dict):
        return {name: "…" if name in VOLATILE else normalised(item) for name, item in value.items()}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def answer(response) -> dict:
    body = response.content.decode()
    return {
        "status": response.status_code,
        "headers": {name: response.get(name) for name in HEADERS},
        "body": normalised(json.loads(body)) if body else None,
    }


def build_world(owner, foreign=None, pin: int = 1) -> None:
    """The owner's schema `person` (versions V1, V2) and its collection `mine` bound to it; with foreign,
    the foreign collection is made while version pin is the latest (binding pins the latest)."""
    person = schema_services.schema_create(name="person", owner=owner, compatibility="NONE")
    for version, definition in enumerate((V1, V2), start=1):
        schema_services.schema_version_register(schema=person, definition=definition, actor=TEST_ACTOR)
        if foreign is not None and version == pin:
            foreign()
    mine = core_services.collection_create(name="mine", owner=owner, actor=TEST_ACTOR, schema=person)
    for key, data in {"ann": {"name": "ann", "age": 3}, "bob": {"name": "bob"}}.items():
        core_services.record_create(collection=mine, key=key, data=data, actor=TEST_ACTOR)


def foreign_collection(outsider_client, records: dict):
    """What makes the outsider's collection `secret`: records, bound to `person` through the API, and a
    write with the Idempotency-Key the owner uses too."""

    def build() -> None:
        secret = core_services.collection_create(
            name="secret", owner=outsider_client.service, actor=TEST_ACTOR
        )
        if records:
            items = [{"key": key, "data": data} for key, data in records.items()]
            core_services.records_bulk(collection=secret, mode="insert", items=items, actor=TEST_ACTOR)
        bound = outsider_client.patch(f"{SECRET}/", {"schema": "person"}, format="json")
        assert bound.status_code == 200, bound.content
        write = outsider_client.post(
            f"{SECRET}/records/",
            {"key": "zed", "data": {"name": "zed"}},
            format="json",
            HTTP_IDEMPOTENCY_KEY="shared",
        )
        assert write.status_code == 201, write.content

    return build


def run_world(owner_client, foreign=None, pin: int = 1) -> list[dict]:
    """Build a world in a savepoint, send the script as the owner, roll the world back."""
    with transaction.atomic():
        build_world(owner_client.service, foreign, pin)
        answers = [answer(step.send(owner_client)) for step in SCRIPT]
        transaction.set_rollback(True)
    return answers


@pytest.mark.parametrize("case", list(FOREIGN))
def test_the_schema_owners_answers_do_not_depend_on_a_foreign_collection_bound_to_its_schema(
    owner, outsider, reader, case
):
    pin, records = FOREIGN[case]

    alone = run_world(owner)
    beside = run_world(owner, foreign_collection(outsider, records), pin)

    assert len(alone) == len(beside) == len(SCRIPT)
    for step, expected, got in zip(SCRIPT, alone, beside, strict=True):
        assert got == expected, f"{step.method} {step.path} {step.body}"


def test_the_script_reaches_real_code_in_both_worlds(owner, outsider, reader):
    """The comparison means something only if the script succeeds where it should and is refused where
    it should: check a few answers of the world with the probe's target."""
    pin, records = FOREIGN["the probe's target"]
    answers = run_world(owner, foreign_collection(outsider, records), pin)
    by_step = dict(zip(((s.method, s.path, json.dumps(s.body)) for s in SCRIPT), answers, strict=False))

    def status(method, path, body=None):
        return by_step[method, path, json.dumps(body)]["status"]

    assert status("POST", f"{S}/compatibility/", {"definition": probe("^123")}) == 200
    assert status("POST", f"{S}/versions/", {"definition": False}) == 409  # refused by `mine` alone
    assert status("POST", f"{S}/versions/", {"definition": probe("^123")}) == 201
    assert status("GET", f"{SECRET}/") == 404
    assert status("PATCH", f"{MINE}/", {"schema_version": 3}) == 200
    refusal = answers[SCRIPT.index(Step("POST", f"{S}/versions/", {"definition": False}))]["body"]
    assert refusal["invalid_records"] == {"mine": {"count": 2, "sample_keys": ["ann", "bob"]}}
    statuses = [a["status"] for a in answers]
    assert statuses.count(500) == 0
    assert sum(200 <= s < 300 for s in statuses) > 40


def _template(path: str) -> str:
    route = resolve(path.split("?")[0]).route
    for name in ("name", "key", "version", "service", "consumer"):
        route = route.replace(f"<str:{name}>", "{" + name + "}")
    return "/" + route


def test_the_script_calls_every_schema_collection_record_and_transaction_operation():
    document = SchemaGenerator().get_schema(request=None, public=True)
    wanted = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if path.startswith(("/api/v1/schemas/", "/api/v1/collections/", "/api/v1/transactions/"))
        and "/events/" not in path
        and "/consumers/" not in path
    }
    called = {(step.method, _template(step.path)) for step in SCRIPT}
    assert wanted - called == set()
