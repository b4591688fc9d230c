"""Writes record history into django-reversion's tables in bulk: one revision per write request.

django-reversion's own context saves one query per object and ignores objects that no longer exist,
so deletions would leave no trace. Here a revision, its WriteMeta and all its versions are inserted
with three statements, and a deletion is stored as a version whose `deleted` field is true.

Writes of records go through `store_records`, which on PostgreSQL inserts (or upserts) the records
and their versions with one statement per 1000 records: the versions are built by the database from
the rows it has just written (INSERT … RETURNING feeding INSERT INTO reversion_version), so the
data crosses the wire once. The serialized form is Django's JSON serializer format either way, so
VersionAdmin can read and revert it; timestamps written by PostgreSQL keep their microseconds.
"""

import functools
import json
from collections.abc import Callable, Iterable

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router
from django.db.models import Max, Model
from django.utils import timezone
from reversion.models import Revision, Version

from core import bulk
from core.models import Record, WriteMeta
from core.pages import read_page
from core.principals import Actor

# A record as a row: field attname to value, the form every set-based write takes.
RECORD_ROW = (
    "id",
    "collection_id",
    "key",
    "data",
    "version",
    "schema_version",
    "deleted",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
)
# The fields of a record in its serialized history ("collection" is the foreign key's name).
_SERIALIZED = tuple("collection" if name == "collection_id" else name for name in RECORD_ROW[1:])
RECORD_UPDATE = ("data", "version", "schema_version", "updated_at", "updated_by")


def record_row(record: Record) -> dict:
    return {name: getattr(record, name) for name in RECORD_ROW}


def serialize_record(row: dict) -> str:
    """A record row as Django's "json" serializer writes the record, without its per-object overhead."""
    fields = dict(zip(_SERIALIZED, (row[name] for name in RECORD_ROW[1:]), strict=True))
    return json.dumps(
        [{"model": "core.record", "pk": str(row["id"]), "fields": fields}], cls=DjangoJSONEncoder
    )


def _revision(db: str, actor: Actor, comment: str) -> Revision:
    revision = Revision.objects.using(db).create(
        date_created=timezone.now(), user_id=actor.user_id, comment=comment
    )
    WriteMeta.objects.using(db).create(revision=revision, actor=actor.label, request_id=actor.request_id)
    return revision


def _audited_fields(obj: Model) -> list[str] | None:
    """Every field, except secrets-adjacent ones: a token's hash stays out of the audit trail."""
    if obj._meta.label == "core.ServiceToken":
        return [f.name for f in obj._meta.concrete_fields if f.name not in ("id", "token_hash")]
    return None


def audit_write(*, objects: Iterable[Model], actor: Actor, comment: str) -> Revision | None:
    """Store one revision with a version of each object (collections, grants) as it is now or was last."""
    objects = list(objects)
    if not objects:
        return None
    db = router.db_for_write(type(objects[0]))
    revision = _revision(db, actor, comment)
    Version.objects.using(db).bulk_create(
        [
            Version(
                revision=revision,
                object_id=str(obj.pk),
                content_type=ContentType.objects.db_manager(db).get_for_model(obj),
                db=db,
                format="json",
                serialized_data=serializers.serialize("json", [obj], fields=_audited_fields(obj)),
                object_repr=str(obj)[:1000],
            )
            for obj in objects
        ]
    )
    return revision


def history_write(*, rows: list[dict], actor: Actor, comment: str) -> Revision | None:
    """Store one revision holding a version of each record row as given (deleted ones with deleted=True)."""
    if not rows:
        return None
    db = router.db_for_write(Record)
    revision = _revision(db, actor, comment)
    _versions(db, revision, rows)
    return revision


def _versions(db: str, revision: Revision, rows: list[dict]) -> None:
    content_type = ContentType.objects.db_manager(db).get_for_model(Record)
    bulk.insert(
        Version,
        [
            {
                "revision_id": revision.pk,
                "object_id": str(row["id"]),
                "content_type_id": content_type.pk,
                "db": db,
                "format": "json",
                "serialized_data": serialize_record(row),
                "object_repr": row["key"],
            }
            for row in rows
        ],
        using=db,
    )


def _serialized_in_sql(alias: str) -> str:
    """SQL building, from a written row `alias`, the text serialize_record would write for it."""
    fields = ", ".join(
        f"'{name}', {alias}.{column}" for name, column in zip(_SERIALIZED, RECORD_ROW[1:], strict=True)
    )
    return (
        f"json_build_array(json_build_object('model', 'core.record', 'pk', {alias}.id::text, "
        f"'fields', json_build_object({fields})))::text"
    )


@functools.cache
def _store_sql(db: str, *, upsert: bool, first: bool) -> str:
    """The statement of store_records, built once per shape from the models' names (PostgreSQL).

    Parameters: the rows as JSON, then (first) the revision's date, user, comment and the WriteMeta's
    actor and request id, or (not first) the revision id; then content type id and db of the versions.
    The first statement of a write also creates the revision and its WriteMeta and returns its id.
    """
    connection = connections[db]
    quote = connection.ops.quote_name
    written = bulk.insert_sql(
        Record,
        RECORD_ROW,
        conflict=("collection", "key"),
        update=RECORD_UPDATE if upsert else (),
        connection=connection,
    )
    if not upsert:
        written += " ON CONFLICT DO NOTHING"
    revision = "%s"
    sql = "WITH "
    if first:
        revision = "(SELECT id FROM rev)"
        sql += (
            f"rev AS (INSERT INTO {quote(Revision._meta.db_table)} (date_created, user_id, comment) "  # noqa: S608
            "VALUES (%s, %s, %s) RETURNING id), "
            f"meta AS (INSERT INTO {quote(WriteMeta._meta.db_table)} (revision_id, actor, request_id) "
            "SELECT id, %s, %s FROM rev), "
        )
    sql += (
        f"written AS ({written} RETURNING *) "  # noqa: S608 - every name comes from the models
        f"INSERT INTO {quote(Version._meta.db_table)} "
        "(revision_id, object_id, content_type_id, db, format, serialized_data, object_repr) "
        f"SELECT {revision}, w.id::text, %s, %s, 'json', {_serialized_in_sql('w')}, w.key FROM written w"
    )
    return sql + (" RETURNING revision_id" if first else "")


def store_records(*, created: list[dict], updated: list[dict], actor: Actor, comment: str) -> int:
    """Insert the created record rows, upsert the updated ones, and store one revision of them all.

    Returns how many records were written. The rows of `updated` must exist and be locked by the
    caller's transaction. A created row whose key exists raises IntegrityError (unique violation),
    except on PostgreSQL, where it is skipped and missing from the count. There a write of up to 1000
    records is one statement: the revision and its WriteMeta, the records, and their versions.
    """
    if not created and not updated:
        return 0
    db = router.db_for_write(Record)
    connection = connections[db]
    if connection.vendor != "postgresql":
        bulk.insert(Record, created, using=db)
        bulk.insert(Record, updated, conflict=("collection", "key"), update=RECORD_UPDATE, using=db)
        history_write(rows=created + updated, actor=actor, comment=comment)
        return len(created) + len(updated)
    content_type = ContentType.objects.db_manager(db).get_for_model(Record)
    revision_id, count = None, 0
    with connection.cursor() as cursor:
        for rows, upsert in ((created, False), (updated, True)):
            for start in range(0, len(rows), bulk.BATCH):
                chunk = [bulk.dumps(rows[start : start + bulk.BATCH]), content_type.pk, db]
                if revision_id is None:
                    cursor.execute(
                        _store_sql(db, upsert=upsert, first=True),
                        [timezone.now(), actor.user_id, comment, actor.label, actor.request_id, *chunk],
                    )
                    count += cursor.rowcount
                    revision_id = (cursor.fetchone() or [None])[0]
                else:
                    cursor.execute(
                        _store_sql(db, upsert=upsert, first=False), [chunk[0], revision_id, *chunk[1:]]
                    )
                    count += cursor.rowcount
    return count


def _versions_of(record_id):
    db = router.db_for_write(Record)
    content_type = ContentType.objects.db_manager(db).get_for_model(Record)
    return (
        Version.objects.using(db)
        .filter(content_type=content_type, db=db, object_id=str(record_id))
        .select_related("revision", "revision__write_meta")
        .order_by("-pk")
    )


def newest_versions(record_ids: Iterable) -> dict[str, int]:
    """The id of the newest stored version of each record id (keyed by the id as text): one query."""
    db = router.db_for_read(Record)
    content_type = ContentType.objects.db_manager(db).get_for_model(Record)
    newest = (
        Version.objects.using(db)
        .filter(content_type=content_type, db=db, object_id__in=[str(pk) for pk in record_ids])
        .values("object_id")
        .annotate(newest=Max("pk"))
        .order_by()
    )
    return {row["object_id"]: row["newest"] for row in newest}


def _entry(version: Version) -> dict:
    fields = json.loads(version.serialized_data)[0]["fields"]
    meta = getattr(version.revision, "write_meta", None)
    return {
        "version": fields["version"],
        "data": fields["data"],
        "deleted": fields.get("deleted", False),
        "changed_at": version.revision.date_created,
        "changed_by": meta.actor if meta else "",
        "request_id": meta.request_id if meta else "",
        "comment": version.revision.comment,
    }


def history_page(
    record_id, *, limit: int, encode: Callable[[dict], bytes], before: int | None = None
) -> tuple[list[bytes], int | None]:
    """Entries of a record key, newest first, encoded (a page of read_page), and the cursor of the next."""
    versions = _versions_of(record_id)
    if before is not None:
        versions = versions.filter(pk__lt=before)
    page = read_page(
        versions,
        limit=limit,
        encode=lambda version: encode(_entry(version)),
        row_bytes=settings.NUCLEUS_MAX_RECORD_BYTES,
    )
    return page.items, (page.last.pk if page.more else None)


def history_entry(record_id, version_number: int) -> dict | None:
    """The history entry of one version number of a record key, or None."""
    for version in _versions_of(record_id).iterator(chunk_size=200):
        entry = _entry(version)
        if entry["version"] == version_number:
            return entry
        if entry["version"] < version_number:
            return None
    return None
