"""Reads of the schema registry."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Max, OuterRef, QuerySet, Subquery

from core.errors import NotFound
from core.models import Collection, Record
from schemas.models import Schema, SchemaVersion
from schemas.validation import compiled_validator

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


@dataclass(frozen=True)
class BoundValidator:
    version: int
    validator: object


def latest_validator_for_write(collection: Collection) -> BoundValidator | None:
    """The validator of the latest version of the schema bound to collection, or None.

    On PostgreSQL this takes a FOR SHARE lock on the collection row until commit, so that binding a
    schema or registering a version (which lock the row FOR UPDATE and check the stored records) cannot
    interleave with a write validated against the previous state, and the collection cannot be deleted
    under the write. A collection deleted before the lock is a 404.
    """
    latest = SchemaVersion.objects.filter(schema_id=OuterRef("schema_id")).order_by("-version")
    row = (
        Collection.objects.filter(pk=collection.pk)
        .annotate(
            latest_version=Subquery(latest.values("version")[:1]),
            fingerprint=Subquery(latest.values("fingerprint")[:1]),
        )
        .values_list("schema_id", "latest_version", "fingerprint")
    )
    if connection.vendor == "postgresql":
        # Lock first, then read in a second statement: under READ COMMITTED a statement that waited for
        # the lock still reads the snapshot it started with, which lacks a version registered (or a
        # binding made) by the transaction it waited for.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM core_collection WHERE id = %s FOR SHARE", [collection.pk])
    found = row.first()
    if not found:
        raise NotFound(f"Collection {collection.name!r} was deleted meanwhile.", code="collection_not_found")
    if found[0] is None or found[1] is None:
        return None
    schema_id, version, fingerprint = found
    validator = compiled_validator(
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
