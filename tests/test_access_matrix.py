"""The access matrix: every route, every method it serves, every kind of caller, the exact status.

One table (ROWS) with a row per route and method: what is sent and the status each caller gets.
The callers:

- anonymous: no credentials;
- revoked, expired: a bearer token of the owner service that was revoked, or has expired;
- inactive: a valid token of a service that was deactivated (it had a write grant);
- outsider: a service with no grant on the owner's collections;
- reader, writer: services with a read or write grant on `items`, `spare` and `feed`;
- owner: the service that owns `items`, `spare`, `feed` and the schema `item`;
- operator: a superuser (staff) calling with an admin session;
- staff: a staff user without any permission, with an admin session: 403 wherever a Django
  permission is needed, which is everywhere but reading schemas and the migration status.

The rules the table spells out (README, "Ownership"; ../shared/NUCLEUS.md §3): no valid credentials
(anonymous, revoked, expired, inactive) → 401 on every API route; a collection a service may not see
→ 404, never 403, so names do not leak; seen but not writable → 403; grants and collection settings
→ owner or operator, else 403; schemas are readable by every caller and changed by their owner or an
operator (403 for other services); backups and system/migrations → operators only (services 403);
/healthz, /readyz and the OpenAPI document and its viewers are public; /metrics is for operators who
may view collections, consumers and backups (403 for everyone else, credentials or not: the scrape
token and trusted networks are tests/test_observability.py's business); the admin wants a staff
session (others are sent to its login).

Every case starts from the same fresh state (each is its own test, rolled back afterwards), and
every route is also called without its trailing slash, where it exists, inside a savepoint that is
rolled back, so both answer from the same state.
"""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from backups import services as backup_services
from backups.models import Backup, BackupKind
from core import services
from core.models import Service, ServiceToken
from core.principals import Actor
from schemas import services as schema_services
from tests.actors import TEST_ACTOR

PRINCIPALS = [
    "anonymous",
    "revoked",
    "expired",
    "inactive",
    "outsider",
    "reader",
    "writer",
    "owner",
    "operator",
    "staff",
]
FAKE_BACKUP = "20200101-000000-000000"


def expect(*, outsider, reader, writer, owner, operator, anonymous=401, revoked=401, expired=401, staff=403):
    return {
        "anonymous": anonymous,
        "revoked": revoked,
        "expired": expired,
        "inactive": revoked,
        "outsider": outsider,
        "reader": reader,
        "writer": writer,
        "owner": owner,
        "operator": operator,
        "staff": staff,
    }


def everyone(status: int, *, unauthenticated: int = 401, staff: int | None = None) -> dict:
    return expect(
        outsider=status,
        reader=status,
        writer=status,
        owner=status,
        operator=status,
        anonymous=unauthenticated,
        revoked=unauthenticated,
        expired=unauthenticated,
        staff=status if staff is None else staff,
    )


def visible(status: int, *, hidden: int = 404) -> dict:
    """Readable by every service with access, and by operators; the outsider does not see it."""
    return expect(outsider=hidden, reader=status, writer=status, owner=status, operator=status)


def writable(status: int) -> dict:
    """Written by the writer, the owner and operators; the reader sees but may not write."""
    return expect(outsider=404, reader=403, writer=status, owner=status, operator=status)


def managed(status: int, *, outsider: int = 404) -> dict:
    """The owner's and operators' business only: other services that see it get 403."""
    return expect(outsider=outsider, reader=403, writer=403, owner=status, operator=status)


def operators_only(status: int, *, staff: int = 403) -> dict:
    return expect(outsider=403, reader=403, writer=403, owner=403, operator=status, staff=staff)


STAFF_200 = {"operator": 200, "staff": 200}


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str  # {backup} is a real backup's id for operators, a made-up one for everyone else
    expected: dict
    body: dict | None = None
    template: str | None = None  # the route as the OpenAPI document names it (API routes)
    twin: str | None = ""  # the same route without its trailing slash ("": derived, None: there is none)
    operator_body: dict = field(default_factory=dict)  # what operators send instead (they name owners)

    def twin_path(self) -> str | None:
        if self.twin is None:
            return None
        return self.twin or self.path.rstrip("/")


C = "/api/v1/collections"
ROWS = [
    # collections
    Row("collections-list", "GET", f"{C}/", everyone(200, staff=403), template=f"{C}/"),
    Row(
        "collections-create",
        "POST",
        f"{C}/",
        everyone(201, staff=403),
        body={"name": "made"},
        operator_body={"name": "made", "owner": "owner"},
        template=f"{C}/",
    ),
    Row("collection-read", "GET", f"{C}/items/", visible(200), template=f"{C}/{{name}}/"),
    Row(
        "collection-update",
        "PATCH",
        f"{C}/items/",
        managed(200),
        body={"description": "changed"},
        template=f"{C}/{{name}}/",
    ),
    Row("collection-delete-empty", "DELETE", f"{C}/spare/", managed(204), template=f"{C}/{{name}}/"),
    Row(
        "collection-delete-not-empty",
        "DELETE",
        f"{C}/items/",
        expect(outsider=404, reader=403, writer=403, owner=409, operator=204),
        template=f"{C}/{{name}}/",
    ),
    # grants
    Row("grants-list", "GET", f"{C}/items/grants/", managed(200), template=f"{C}/{{name}}/grants/"),
    Row(
        "grants-set",
        "POST",
        f"{C}/items/grants/",
        managed(201),
        body={"service": "outsider", "access": "read"},
        template=f"{C}/{{name}}/grants/",
    ),
    Row(
        "grants-revoke",
        "DELETE",
        f"{C}/items/grants/reader/",
        managed(204),
        template=f"{C}/{{name}}/grants/{{service}}/",
    ),
    # records
    Row("records-list", "GET", f"{C}/items/records/", visible(200), template=f"{C}/{{name}}/records/"),
    Row(
        "records-create",
        "POST",
        f"{C}/items/records/",
        writable(201),
        body={"key": "new", "data": {"n": 1}},
        template=f"{C}/{{name}}/records/",
    ),
    Row(
        "record-read", "GET", f"{C}/items/records/a/", visible(200), template=f"{C}/{{name}}/records/{{key}}/"
    ),
    Row(
        "record-replace",
        "PUT",
        f"{C}/items/records/a/",
        writable(200),
        body={"data": {"n": 2}},
        template=f"{C}/{{name}}/records/{{key}}/",
    ),
    Row(
        "record-put-creates",
        "PUT",
        f"{C}/items/records/new/",
        writable(201),
        body={"data": {"n": 2}},
        template=f"{C}/{{name}}/records/{{key}}/",
    ),
    Row(
        "record-patch",
        "PATCH",
        f"{C}/items/records/a/",
        writable(200),
        body={"data": {"m": 1}},
        template=f"{C}/{{name}}/records/{{key}}/",
    ),
    Row(
        "record-delete",
        "DELETE",
        f"{C}/items/records/a/",
        writable(204),
        template=f"{C}/{{name}}/records/{{key}}/",
    ),
    Row(
        "records-bulk",
        "POST",
        f"{C}/items/records/bulk/",
        writable(201),
        body={"mode": "upsert", "records": [{"key": "n1", "data": {}}, {"key": "n2", "data": {}}]},
        template=f"{C}/{{name}}/records/bulk/",
    ),
    Row(
        "record-history",
        "GET",
        f"{C}/items/records/a/history/",
        visible(200),
        template=f"{C}/{{name}}/records/{{key}}/history/",
    ),
    Row(
        "record-revert",
        "POST",
        f"{C}/items/records/a/revert/",
        writable(200),
        body={"version": 1},
        template=f"{C}/{{name}}/records/{{key}}/revert/",
    ),
    # streams
    Row("events-list", "GET", f"{C}/feed/events/", visible(200), template=f"{C}/{{name}}/events/"),
    Row(
        "events-append",
        "POST",
        f"{C}/feed/events/",
        writable(201),
        body={"events": [{"type": "made", "data": {"n": 1}}]},
        template=f"{C}/{{name}}/events/",
    ),
    # Consumers are the reading side: whoever may read a stream keeps positions of its own; the
    # stream's owner and operators see every service's, only operators move another service's.
    Row("consumers-list", "GET", f"{C}/feed/consumers/", visible(200), template=f"{C}/{{name}}/consumers/"),
    Row(
        "consumer-read",
        "GET",
        f"{C}/feed/consumers/worker/",
        visible(200),
        template=f"{C}/{{name}}/consumers/{{consumer}}/",
    ),
    Row(
        "consumer-forward",
        "PUT",
        f"{C}/feed/consumers/fresh/",
        visible(200),
        body={"offset": 1},
        template=f"{C}/{{name}}/consumers/{{consumer}}/",
    ),
    Row(
        # `worker` is the owner's; another service's PUT keeps (here: creates) a `worker` of its own.
        "consumer-back-with-force",
        "PUT",
        f"{C}/feed/consumers/worker/",
        visible(200),
        body={"offset": 0, "force": True},
        template=f"{C}/{{name}}/consumers/{{consumer}}/",
    ),
    Row(
        "consumer-of-the-owner-read",
        "GET",
        f"{C}/feed/consumers/worker/?service=owner",
        expect(outsider=404, reader=404, writer=404, owner=200, operator=200),
        template=f"{C}/{{name}}/consumers/{{consumer}}/",
        twin=f"{C}/feed/consumers/worker?service=owner",
    ),
    Row(
        "consumer-of-the-reader-move",
        "PUT",
        f"{C}/feed/consumers/worker/?service=reader",
        expect(outsider=404, reader=200, writer=404, owner=403, operator=200),
        body={"offset": 1},
        template=f"{C}/{{name}}/consumers/{{consumer}}/",
        twin=f"{C}/feed/consumers/worker?service=reader",
    ),
    # transactions
    Row(
        "transaction-records",
        "POST",
        "/api/v1/transactions/",
        writable(200),
        body={"operations": [{"op": "put", "collection": "items", "key": "t", "data": {}}]},
        template="/api/v1/transactions/",
    ),
    Row(
        "transaction-append",
        "POST",
        "/api/v1/transactions/",
        writable(200),
        body={"operations": [{"op": "append", "collection": "feed", "events": [{"type": "t", "data": {}}]}]},
        template="/api/v1/transactions/",
    ),
    # schemas
    Row("schemas-list", "GET", "/api/v1/schemas/", everyone(200), template="/api/v1/schemas/"),
    Row(
        "schemas-create",
        "POST",
        "/api/v1/schemas/",
        everyone(201, staff=403),
        body={"name": "made"},
        operator_body={"name": "made", "owner": "owner"},
        template="/api/v1/schemas/",
    ),
    Row("schema-read", "GET", "/api/v1/schemas/item/", everyone(200), template="/api/v1/schemas/{name}/"),
    Row(
        "schema-update",
        "PATCH",
        "/api/v1/schemas/item/",
        managed(200, outsider=403),
        body={"description": "changed"},
        template="/api/v1/schemas/{name}/",
    ),
    Row(
        "schema-versions-list",
        "GET",
        "/api/v1/schemas/item/versions/",
        everyone(200),
        template="/api/v1/schemas/{name}/versions/",
    ),
    Row(
        "schema-version-register",
        "POST",
        "/api/v1/schemas/item/versions/",
        managed(201, outsider=403),
        body={"definition": {"type": "object", "required": ["n"]}},
        template="/api/v1/schemas/{name}/versions/",
    ),
    Row(
        "schema-version-read",
        "GET",
        "/api/v1/schemas/item/versions/1/",
        everyone(200),
        template="/api/v1/schemas/{name}/versions/{version}/",
    ),
    Row(
        "schema-version-latest",
        "GET",
        "/api/v1/schemas/item/versions/latest/",
        everyone(200),
        template="/api/v1/schemas/{name}/versions/{version}/",
    ),
    Row(
        "schema-compatibility",
        "POST",
        "/api/v1/schemas/item/compatibility/",
        managed(200, outsider=403),
        body={"definition": {"type": "object", "required": ["n"]}},
        template="/api/v1/schemas/{name}/compatibility/",
    ),
    # system and backups: operators only
    Row(
        "system-migrations",
        "GET",
        "/api/v1/system/migrations/",
        operators_only(200, staff=200),  # any active staff user, no permission needed
        template="/api/v1/system/migrations/",
    ),
    Row("backups-list", "GET", "/api/v1/backups/", operators_only(200), template="/api/v1/backups/"),
    Row(
        "backups-create",
        "POST",
        "/api/v1/backups/",
        operators_only(201),
        body={},
        template="/api/v1/backups/",
    ),
    Row(
        "backup-read",
        "GET",
        "/api/v1/backups/{backup}/",
        operators_only(200),
        template="/api/v1/backups/{backup_id}/",
    ),
    Row(
        "backup-delete",
        "DELETE",
        "/api/v1/backups/{backup}/",
        operators_only(204),
        template="/api/v1/backups/{backup_id}/",
    ),
    Row(
        "backup-verify",
        "POST",
        "/api/v1/backups/{backup}/verify/",
        operators_only(200),
        template="/api/v1/backups/{backup_id}/verify/",
    ),
    Row(
        "backup-restore",
        "POST",
        "/api/v1/backups/{backup}/restore/",
        operators_only(200),
        body={"confirm": "{backup}"},
        template="/api/v1/backups/{backup_id}/restore/",
    ),
    # public: probes, the OpenAPI document and its viewer (credentials are not even looked at)
    Row("healthz", "GET", "/healthz", everyone(200, unauthenticated=200), twin="/healthz/"),
    Row("readyz", "GET", "/readyz", everyone(200, unauthenticated=200), twin="/readyz/"),
    # metrics: operators (staff users who may view collections, consumers and backups), the scrape
    # token and configured networks (none here)
    Row(
        "metrics",
        "GET",
        "/metrics",
        operators_only(200) | {"anonymous": 403, "revoked": 403, "expired": 403, "inactive": 403},
        twin="/metrics/",
    ),
    Row("openapi", "GET", "/api/schema/", everyone(200, unauthenticated=200)),
    Row("openapi-viewer", "GET", "/api/docs/", everyone(200, unauthenticated=200)),
    Row("openapi-redoc", "GET", "/api/redoc/", everyone(200, unauthenticated=200)),
    # anything else under /api/ is a 404 for everybody, before authentication
    Row("api-unknown", "GET", "/api/v1/nothing/", everyone(404, unauthenticated=404)),
    Row("api-unknown-delete", "DELETE", "/api/v1/nothing/", everyone(404, unauthenticated=404)),
    # the admin: staff sessions only; everyone else (bearer tokens included) is sent to its login page
    Row("admin", "GET", "/admin/", everyone(302, unauthenticated=302) | STAFF_200, twin=None),
    Row(
        "admin-migrations",
        "GET",
        "/admin/migrations/",
        everyone(302, unauthenticated=302) | STAFF_200,
        twin=None,
    ),
]


def _needs_real_server_state(row: Row, who: str) -> bool:
    """Backups really dump and restore: an operator's backup calls need committed data."""
    return row.path.startswith("/api/v1/backups/") and who == "operator"


CASES = [
    pytest.param(
        row,
        who,
        id=f"{row.id}-{who}",
        marks=pytest.mark.django_db(transaction=_needs_real_server_state(row, who)),
    )
    for row in ROWS
    for who in PRINCIPALS
]


def test_the_table_covers_every_operation_of_the_openapi_document():
    document = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        (method.upper(), path)
        for path, items in document["paths"].items()
        for method in items
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations == {(row.method, row.template) for row in ROWS if row.template}
    assert all(set(row.expected) == set(PRINCIPALS) for row in ROWS)


@pytest.fixture
def backup_storage(tmp_path, settings):
    folder = tmp_path / "backups"
    settings.NUCLEUS_BACKUP_DIR = folder
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder), "file_permissions_mode": 0o600},
        },
    }
    return folder


def _token_client(service, *, revoked: bool = False, expired: bool = False) -> APIClient:
    token, plain = services.token_issue(
        actor=TEST_ACTOR, service=service, label="matrix", expires_at=timezone.now() + timedelta(days=1)
    )
    if revoked:
        services.token_revoke(token=token, actor=TEST_ACTOR)
    if expired:
        ServiceToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    return client


@pytest.fixture
def staff(django_user_model) -> APIClient:
    user = django_user_model.objects.create_user(username="bob", password="-", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def inactive() -> APIClient:
    service, _ = services.service_ensure(actor=TEST_ACTOR, name="dormant")
    client = _token_client(service)
    Service.objects.filter(pk=service.pk).update(is_active=False)
    return client


@pytest.fixture
def world(owner, reader, writer, outsider, operator, staff, inactive, backup_storage):
    """The owner's collections, grants, records, stream and schema; and a client for every caller."""
    items = services.collection_create(actor=TEST_ACTOR, name="items", owner=owner.service)
    spare = services.collection_create(actor=TEST_ACTOR, name="spare", owner=owner.service)
    feed = services.collection_create(actor=TEST_ACTOR, name="feed", owner=owner.service, kind="stream")
    for collection in (items, spare, feed):
        services.grant_set(actor=TEST_ACTOR, collection=collection, service_name="reader", access="read")
        services.grant_set(actor=TEST_ACTOR, collection=collection, service_name="writer", access="write")
        services.grant_set(actor=TEST_ACTOR, collection=collection, service_name="dormant", access="write")
    services.record_put(collection=items, key="a", data={"n": 1}, actor=TEST_ACTOR)
    services.stream_append(stream=feed, events=[{"type": "made", "data": {}}], actor=TEST_ACTOR)
    services.consumer_position_set(stream=feed, consumer="worker", offset=1, actor=TEST_ACTOR)
    schema = schema_services.schema_create(name="item", owner=owner.service, compatibility="NONE")
    schema_services.schema_version_register(schema=schema, definition={"type": "object"}, actor=TEST_ACTOR)
    return {
        "anonymous": APIClient(),
        "revoked": _token_client(owner.service, revoked=True),
        "expired": _token_client(owner.service, expired=True),
        "inactive": inactive,
        "outsider": outsider,
        "reader": reader,
        "writer": writer,
        "owner": owner,
        "operator": operator,
        "staff": staff,
    }


def _fill(value, backup_id: str):
    if isinstance(value, str):
        return value.replace("{backup}", backup_id)
    if isinstance(value, dict):
        return {name: _fill(item, backup_id) for name, item in value.items()}
    return value


def _call(client: APIClient, row: Row, path: str, body):
    method = getattr(client, row.method.lower())
    if body is None:
        return method(path)
    return method(path, body, format="json")


@pytest.mark.parametrize(("row", "who"), CASES)
def test_access_matrix(world, operator_user, row: Row, who: str):
    client = world[who]
    backup_id = FAKE_BACKUP
    if _needs_real_server_state(row, who):
        backup_id = backup_services.backup_create(
            actor=Actor.for_user(operator_user), kind=BackupKind.MANUAL, note="matrix"
        ).id
    path = _fill(row.path, backup_id)
    body = _fill(row.operator_body if who == "operator" and row.operator_body else row.body, backup_id)
    expected = row.expected[who]

    twin = row.twin_path()
    if twin is not None and not _needs_real_server_state(row, who):
        # The slash-less twin first, in a savepoint that is rolled back: the same state for both calls.
        with transaction.atomic():
            response = _call(client, row, _fill(twin, backup_id), body)
            transaction.set_rollback(True)
        assert response.status_code == expected, (twin, who, response.status_code, response.content[:300])

    response = _call(client, row, path, body)

    assert response.status_code == expected, (path, who, response.status_code, response.content[:300])
    if path.startswith("/api/v1/") and expected >= 400:
        assert response["Content-Type"].startswith("application/problem+json")
        assert response.json()["status"] == expected
    if expected == 401:
        assert "Bearer" in response["WWW-Authenticate"]
    if _needs_real_server_state(row, who) and row.id != "backup-delete":
        assert Backup.objects.filter(pk=backup_id).exists()
