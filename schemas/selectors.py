"""Reads of the schema registry."""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Max, QuerySet

from core.errors import NotFound
from core.models import Record
from core.pages import decode_cursor_position, encode_cursor, read_page
from schemas.models import Schema, SchemaVersion
from schemas.validation import stored_validator

SAMPLE_KEYS = 10


def schemas_with_latest() -> QuerySet[Schema]:
    return Schema.objects.select_related("owner").annotate(latest_version=Max("versions__version"))


def schema_get(*, name: str) -> Schema:
    schema = schemas_with_latest().filter(name=name).first()
    if schema is None:
        raise NotFound(f"There is no schema {name!r}.", code="schema_not_found")
    return schema


def schema_version_get(*, schema: Schema, version: str | int) -> SchemaVersion:
    versions = SchemaVersion.objects.select_related("schema").filter(schema=schema)
    if version == "latest":
        found = versions.order_by("-version").first()
    elif isinstance(version, int) or str(version).isdigit():
        found = versions.filter(version=int(version)).first()
    else:
        found = None
    if found is None:
        raise NotFound(f"Schema {schema.name!r} has no version {version}.", code="schema_version_not_found")
    return found


def schema_versions_page(
    *, schema: Schema, limit: int, encode: Callable[[SchemaVersion], bytes], cursor: str | None = None
) -> tuple[list[bytes], str | None]:
    """Versions of a schema in order, encoded (a page of read_page), and the cursor of the next."""
    versions = SchemaVersion.objects.select_related("schema").filter(schema=schema)
    if cursor:
        versions = versions.filter(version__gt=decode_cursor_position(cursor))
    # A definition is limited only by the request body it came in.
    page = read_page(
        versions.order_by("version"), limit=limit, encode=encode, row_bytes=settings.NUCLEUS_MAX_BODY_BYTES
    )
    return page.items, (encode_cursor([str(page.last.version)]) if page.more else None)


@dataclass(frozen=True)
class BoundValidator:
    version: int
    validator: object


def bound_validator(
    schema_id: int | None, version: int | None, fingerprint: str | None
) -> BoundValidator | None:
    """The compiled validator of one schema version (loaded and compiled only on first use)."""
    if schema_id is None or version is None:
        return None
    validator = stored_validator(
        fingerprint,
        lambda: SchemaVersion.objects.values_list("definition", flat=True).get(
            schema_id=schema_id, version=version
        ),
    )
    return BoundValidator(version=version, validator=validator)


def invalid_records(*, collections, validator) -> dict[str, dict]:
    """Per collection name: how many stored records the validator rejects, and some of their keys.

    Streams the records in chunks; never holds a whole collection in memory.
    """
    report = {}
    for collection in collections:
        count, sample = 0, []
        rows = Record.objects.filter(collection=collection).order_by("key").values_list("key", "data")
        for key, data in rows.iterator(chunk_size=2000):
            if not validator.is_valid(data):
                count += 1
                if len(sample) < SAMPLE_KEYS:
                    sample.append(key)
        if count:
            report[collection.name] = {"count": count, "sample_keys": sample}
    return report


def migration_status() -> dict:
    """Applied and pending migrations per app, as the migration loader sees this database."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection, ignore_no_migrations=True)
    apps: dict[str, dict] = {}
    for app_label, name in sorted(loader.graph.nodes):
        entry = apps.setdefault(app_label, {"app": app_label, "applied": [], "pending": []})
        entry["applied" if (app_label, name) in loader.applied_migrations else "pending"].append(name)
    ordered = [apps[label] for label in sorted(apps)]
    return {"pending": sum(len(entry["pending"]) for entry in ordered), "apps": ordered}
