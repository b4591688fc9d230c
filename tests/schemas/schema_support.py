"""Helpers of the schema registry API tests: URLs by route name, definitions, set-up through services."""

import hashlib
import json
import threading
import time
from http.client import HTTPConnection
from urllib.parse import urlsplit

from django.db import connection, transaction
from django.urls import reverse

from core.models import Collection, Record
from core.services import collection_create, collection_update, record_create
from schemas import services
from schemas.models import Schema, SchemaVersion
from tests.actors import TEST_ACTOR

DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def schemas_url() -> str:
    return reverse("schema-list")


def schema_url(name: str) -> str:
    return reverse("schema-detail", args=[name])


def versions_url(name: str) -> str:
    return reverse("schema-version-list", args=[name])


def version_url(name: str, version: int | str) -> str:
    return reverse("schema-version-detail", args=[name, version])


def compatibility_url(name: str) -> str:
    return reverse("schema-compatibility", args=[name])


def collections_url() -> str:
    return reverse("collection-list")


def collection_url(name: str) -> str:
    return reverse("collection-detail", args=[name])


def obj(properties: dict, required=(), *, closed: bool = False, **keywords) -> dict:
    """An object schema with these properties (open unless closed)."""
    definition = {"type": "object", "properties": properties}
    if required:
        definition["required"] = list(required)
    if closed:
        definition["additionalProperties"] = False
    definition.update(keywords)
    return definition


INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
STRING = {"type": "string"}


def nested_any_of(depth: int, leaf: dict) -> dict:
    """anyOf trees whose comparison is exponential in depth (every narrow leaf against every wide one)."""
    if depth == 0:
        return leaf
    return {"anyOf": [nested_any_of(depth - 1, leaf), nested_any_of(depth - 1, {**leaf, "minLength": depth})]}


def fingerprint(definition) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, UTF-8), computed independently of the code."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_schema(owner, name: str, *definitions, compatibility: str = "BACKWARD") -> Schema:
    """A schema owned by the service owner, with definitions registered as versions 1, 2, ..."""
    schema = services.schema_create(name=name, owner=owner, compatibility=compatibility)
    for definition in definitions:
        services.schema_version_register(schema=schema, definition=definition, actor=TEST_ACTOR)
    return schema


def make_collection(
    owner, name: str, schema: Schema | None = None, records: dict | None = None
) -> Collection:
    """A records collection of owner holding records (key -> data), then bound to schema if given."""
    collection = collection_create(name=name, owner=owner, actor=TEST_ACTOR)
    for key, data in (records or {}).items():
        record_create(collection=collection, key=key, data=data, actor=TEST_ACTOR)
    if schema is not None:
        collection = collection_update(collection=collection, schema=schema, actor=TEST_ACTOR)
    return collection


def registry_state(schema: Schema) -> dict:
    """Everything registering a version could change: the versions and the schema row."""
    schema.refresh_from_db()
    return {
        "versions": list(
            SchemaVersion.objects.filter(schema=schema)
            .order_by("version")
            .values_list("version", "fingerprint", "definition")
        ),
        "schema": (schema.compatibility, schema.description, schema.updated_at),
    }


def stored(collection: Collection) -> dict:
    """key -> (version, data, schema_version) of the collection's records."""
    return {
        key: (version, data, schema_version)
        for key, version, data, schema_version in Record.objects.filter(collection=collection).values_list(
            "key", "version", "data", "schema_version"
        )
    }


# --- concurrency (PostgreSQL) ----------------------------------------------------------------------


class HeldTransaction:
    """Runs work(...) in a thread inside a transaction and keeps it open until the with block ends.

    The thread has its own database connection, so the locks work takes are held against the test's
    other connections until the block is left (then it commits, or rolls back if work failed).
    """

    def __init__(self, work):
        self.work = work
        self.ready, self.release = threading.Event(), threading.Event()
        self.result, self.errors = None, []
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            with transaction.atomic():
                self.result = self.work()
                self.ready.set()
                self.release.wait(60)
        except Exception as exc:  # reported by __enter__ or the test
            self.errors.append(repr(exc))
        finally:
            self.ready.set()
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(60), "the held transaction did not start"
        assert self.errors == [], self.errors
        return self

    def __exit__(self, *exc_info):
        self.release.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the held transaction did not finish"


class Request:
    """One HTTP request to the live server, made in a thread; status and body once it answers."""

    def __init__(self, base_url: str, token: str, method: str, path: str, body: dict):
        self.outcome: dict = {}
        self.thread = threading.Thread(target=self._run, args=(base_url, token, method, path, body))
        self.thread.start()

    def _run(self, base_url, token, method, path, body):
        address = urlsplit(base_url)
        http = HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            http.request(method, path, body=json.dumps(body), headers=headers)
            response = http.getresponse()
            self.outcome["status"], self.outcome["body"] = response.status, json.loads(response.read())
        except Exception as exc:  # reported by the test
            self.outcome["error"] = repr(exc)
        finally:
            http.close()

    def answer(self) -> dict:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the request did not finish"
        return self.outcome


def wait_until_blocked(fragment: str, timeout: float = 30) -> list[str]:
    """Queries of other sessions that wait for a lock and contain fragment; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            waiting = [row[0] for row in cursor.fetchall() if fragment.upper() in row[0].upper()]
        if waiting:
            return waiting
        time.sleep(0.02)
    raise AssertionError(f"no session waited for a lock in a query containing {fragment!r}")
