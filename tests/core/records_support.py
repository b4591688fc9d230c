"""Helpers of the record tests: URLs by route name, and the database state a refused request must keep."""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from reversion.models import Revision, Version

from core.history import history_page
from core.models import Collection, Record, RecordTombstone, record_pk

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def records_url(collection: str = "items") -> str:
    return reverse("record-list", args=[collection])


def record_url(key: str, collection: str = "items") -> str:
    return reverse("record-detail", args=[collection, key])


def bulk_url(collection: str = "items") -> str:
    return reverse("record-bulk", args=[collection])


def history_url(key: str, collection: str = "items") -> str:
    return reverse("record-history", args=[collection, key])


def revert_url(key: str, collection: str = "items") -> str:
    return reverse("record-revert", args=[collection, key])


def if_match(version: int | str) -> dict:
    return {"HTTP_IF_MATCH": f'"{version}"'}


def history_count(collection: Collection, key: str) -> int:
    """How many versions of history the record key has (deletions included)."""
    return Version.objects.get_for_object_reference(Record, record_pk(collection.pk, key)).count()


def db_state(collection: Collection) -> dict:
    """Everything a write to collection could change: its rows, tombstones and all history."""
    rows = Record.objects.filter(collection=collection).order_by("key")
    return {
        "records": list(rows.values_list("key", "version", "data", "updated_at", "updated_by")),
        "tombstones": list(
            RecordTombstone.objects.filter(collection=collection)
            .order_by("key")
            .values_list("key", "version")
        ),
        "revisions": Revision.objects.count(),
        "versions": Version.objects.count(),
    }


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """The response is an RFC 9457 problem with this status (and code); returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS, body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    assert body["type"].endswith(body["code"])
    return body


def error_paths(body: dict) -> list[str]:
    return [error["path"] for error in body.get("errors") or []]


def history_fields(collection: Collection, key: str) -> list[dict]:
    """The stored fields (version, data, deleted, ...) of each history version of record key, oldest first."""
    versions = Version.objects.get_for_object_reference(Record, record_pk(collection.pk, key)).order_by("pk")
    return [json.loads(version.serialized_data)[0]["fields"] for version in versions]


def history_versions(collection: Collection, key: str) -> list[int]:
    """The version numbers in the history of record key, oldest first (deletions included)."""
    return [fields["version"] for fields in history_fields(collection, key)]


def history_entries(record_id, limit: int = 100) -> list[dict]:
    """The history entries of a record key, newest first, as history_page reads them (through JSON)."""
    encoded, _ = history_page(
        record_id, limit=limit, encode=lambda entry: json.dumps(entry, cls=DjangoJSONEncoder).encode()
    )
    return [json.loads(entry) for entry in encoded]
