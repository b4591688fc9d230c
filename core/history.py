"""Writes record history into django-reversion's tables in bulk: one revision per write request.

django-reversion's own context saves one query per object and ignores objects that no longer exist,
so deletions would leave no trace. Here a revision, its WriteMeta and all its versions are inserted
with three statements, and a deletion is stored as a version whose `deleted` field is true. The
serialized form is exactly Django's JSON serializer's, so VersionAdmin can read and revert it.
"""

import json
from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import router
from django.db.models import Model
from django.utils import timezone
from reversion.models import Revision, Version

from core.models import Record, WriteMeta
from core.principals import Actor

_RECORD_FIELDS = (
    "collection",
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


def serialize_record(record: Record) -> str:
    """The record as Django's "json" serializer writes it, without its per-object overhead."""
    fields = {
        name: getattr(record, "collection_id" if name == "collection" else name) for name in _RECORD_FIELDS
    }
    return json.dumps(
        [{"model": "core.record", "pk": str(record.pk), "fields": fields}], cls=DjangoJSONEncoder
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


def history_write(*, records: Iterable[Record], actor: Actor, comment: str) -> Revision | None:
    """Store one revision holding a version of each record as given (deleted ones with deleted=True)."""
    records = list(records)
    if not records:
        return None
    db = router.db_for_write(Record)
    content_type = ContentType.objects.db_manager(db).get_for_model(Record)
    revision = _revision(db, actor, comment)
    Version.objects.using(db).bulk_create(
        [
            Version(
                revision=revision,
                object_id=str(record.pk),
                content_type=content_type,
                db=db,
                format="json",
                serialized_data=serialize_record(record),
                object_repr=f"{record.key}",
            )
            for record in records
        ],
        batch_size=1000,
    )
    return revision


def _versions_of(record_id):
    db = router.db_for_write(Record)
    content_type = ContentType.objects.db_manager(db).get_for_model(Record)
    return (
        Version.objects.using(db)
        .filter(content_type=content_type, db=db, object_id=str(record_id))
        .select_related("revision", "revision__write_meta")
        .order_by("-pk")
    )


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


def history_page(record_id, *, limit: int, before: int | None = None) -> tuple[list[dict], int | None]:
    """Versions of a record key, newest first, and the cursor of the next page (or None). One query."""
    versions = _versions_of(record_id)
    if before is not None:
        versions = versions.filter(pk__lt=before)
    page = list(versions[: limit + 1])
    next_before = page[limit - 1].pk if len(page) > limit else None
    return [_entry(version) for version in page[:limit]], next_before


def history_entry(record_id, version_number: int) -> dict | None:
    """The history entry of one version number of a record key, or None."""
    for version in _versions_of(record_id).iterator(chunk_size=200):
        entry = _entry(version)
        if entry["version"] == version_number:
            return entry
        if entry["version"] < version_number:
            return None
    return None
