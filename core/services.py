"""Every write of the core app. Views, the admin and commands call these; nothing else saves core models."""

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, router, transaction
from django.utils import timezone

from core import bulk, long_polls, rows
from core.errors import (
    Conflict,
    ContentTooLarge,
    NotFound,
    NucleusError,
    PreconditionFailed,
    PreconditionRequired,
    ValidationFailed,
)
from core.history import audit_write, history_entry, history_write, record_row, store_records
from core.logging import log_events_appended, log_records_changed
from core.models import (
    KEY_PATTERN,
    NAME_PATTERN,
    SERVICE_NAME_PATTERN,
    Access,
    Collection,
    CollectionKind,
    ConsumerPosition,
    Event,
    Grant,
    Record,
    RecordTombstone,
    Service,
    ServiceToken,
    record_pk,
)
from core.principals import Actor
from core.selectors import WriteState, collection_write_state, require_records, require_stream
from core.tokens import TOKEN_PREFIX, token_hash
from core.validation import check_collection_name, check_record_data, merge_patch
from schemas.models import Schema
from schemas.services import collection_schema_check
from schemas.validation import data_errors

_KEY_RE = re.compile(KEY_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)
_SERVICE_NAME_RE = re.compile(SERVICE_NAME_PATTERN)

# If-Match as the services see it: None (header absent), "*" (any existing record), or a set of versions.
IfMatch = None | str | frozenset[int]


# --- services and tokens -------------------------------------------------------------------------


@transaction.atomic
def service_ensure(*, name: str, actor: Actor, description: str | None = None) -> tuple[Service, bool]:
    """Return the service called name, creating it if needed; a given description replaces the old one."""
    if not _SERVICE_NAME_RE.fullmatch(name):
        raise ValidationFailed(
            f"{name!r} is not a valid service name: use lower-case letters, digits, '_' and '-', "
            "starting with a letter (at most 63).",
            code="invalid_name",
            errors=[{"path": "/name", "message": "does not match ^[a-z][a-z0-9_-]{0,62}$"}],
        )
    service, created = Service.objects.get_or_create(name=name, defaults={"description": description or ""})
    if created:
        audit_write(objects=[service], actor=actor, comment="service created")
    elif description is not None and service.description != description:
        service.description = description
        service.save(update_fields=["description", "updated_at"])
        audit_write(objects=[service], actor=actor, comment="changed description")
    return service, created


@transaction.atomic
def service_update(
    *, service: Service, actor: Actor, description: str | None = None, is_active: bool | None = None
) -> Service:
    """Change a service's description or active flag; an inactive service's tokens get 401."""
    if description is not None:
        service.description = description
    if is_active is not None:
        service.is_active = is_active
    service.save(update_fields=["description", "is_active", "updated_at"])
    audit_write(objects=[service], actor=actor, comment="service changed")
    return service


@transaction.atomic
def token_issue(
    *, service: Service, actor: Actor, label: str = "", expires_at: datetime | None = None
) -> tuple[ServiceToken, str]:
    """Create a token for service; the plain token is returned only here and never stored."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.", code="invalid_expiry")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ServiceToken.objects.create(
        service=service, label=label, prefix=plain[:12], token_hash=token_hash(plain), expires_at=expires_at
    )
    audit_write(objects=[token], actor=actor, comment=f"token {token.prefix}… issued to {service.name}")
    return token, plain


@transaction.atomic
def token_revoke(*, token: ServiceToken, actor: Actor) -> ServiceToken:
    """Revoke a token from now on (idempotent)."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        if ServiceToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=token.revoked_at
        ):
            audit_write(objects=[token], actor=actor, comment=f"token {token.prefix}… revoked")
    return token


def token_touch(*, token: ServiceToken, now: datetime) -> None:
    """Record that token was used; written at most once per NUCLEUS_TOKEN_TOUCH_INTERVAL seconds."""
    interval = timedelta(seconds=settings.NUCLEUS_TOKEN_TOUCH_INTERVAL)
    if token.last_used_at is None or now - token.last_used_at >= interval:
        ServiceToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


# --- collections and grants ----------------------------------------------------------------------

UNCHANGED = object()  # a keyword argument left as it is


def _check_bindable(kind: str, schema: "Schema") -> None:
    if kind != CollectionKind.RECORDS:
        raise ValidationFailed(
            "Only records collections can be bound to a schema.",
            code="schema_on_stream",
            errors=[{"path": "/schema", "message": "streams cannot be bound to a schema."}],
        )
    if not schema.versions.exists():
        raise ValidationFailed(
            f"Schema {schema.name!r} has no versions yet; register one before binding it.",
            code="schema_has_no_versions",
            errors=[{"path": "/schema", "message": "has no versions."}],
        )


def _pinned_version(owner: Service, schema: "Schema | None", schema_version, *, current) -> int | None:
    """The version a collection of owner bound to schema is pinned to; None: it follows the latest.

    schema_version UNCHANGED keeps `current`, or, for a new binding (current UNCHANGED), pins the latest
    version of another service's schema and follows the owner's own. Another service's schema is never
    followed: registering a version of it would then read, and could be refused by, records that the
    schema's owner may not read.
    """
    if schema is None:
        if schema_version not in (UNCHANGED, None):
            raise ValidationFailed(
                "schema_version pins a version of the collection's schema, and it is bound to none.",
                code="schema_version_without_schema",
                errors=[{"path": "/schema_version", "message": "needs a schema."}],
            )
        return None
    foreign = schema.owner_id != owner.pk
    if schema_version is UNCHANGED:
        if current is not UNCHANGED:
            return current
        return (
            schema.versions.order_by("-version").values_list("version", flat=True).first()
            if foreign
            else None
        )
    if schema_version is None:
        if foreign:
            raise ValidationFailed(
                f"Schema {schema.name!r} belongs to another service, so a collection bound to it is pinned "
                "to a version: name one in schema_version, or leave it out to pin the latest.",
                code="schema_version_required",
                errors=[
                    {"path": "/schema_version", "message": "may not be null for another service's schema."}
                ],
            )
        return None
    if not schema.versions.filter(version=schema_version).exists():
        raise ValidationFailed(
            f"Schema {schema.name!r} has no version {schema_version}.",
            code="unknown_schema_version",
            errors=[{"path": "/schema_version", "message": "no such version of the schema."}],
        )
    return schema_version


def check_change_stream_kind(kind: str) -> None:
    """Only records collections have a change stream: checked before the stream's name is looked up,
    so that the answer never depends on whether another service's collection has that name."""
    if kind != CollectionKind.RECORDS:
        raise ValidationFailed(
            "Only records collections have a change stream.",
            code="change_stream_on_stream",
            errors=[{"path": "/change_stream", "message": "streams cannot have a change stream."}],
        )


def _check_change_stream(kind: str, owner: Service, stream: Collection) -> None:
    check_change_stream_kind(kind)
    if stream.kind != CollectionKind.STREAM or stream.owner_id != owner.pk:
        raise ValidationFailed(
            f"{stream.name!r} is not a stream of the same owner.",
            code="invalid_change_stream",
            errors=[
                {"path": "/change_stream", "message": "must name a stream collection of the same owner."}
            ],
        )


@transaction.atomic
def collection_create(
    *,
    name: str,
    owner: Service,
    actor: Actor,
    kind: str = CollectionKind.RECORDS,
    description: str = "",
    require_if_match: bool = False,
    schema: "Schema | None" = None,
    schema_version: int | object | None = UNCHANGED,
    change_stream: Collection | None = None,
) -> Collection:
    """Create a collection owned by owner, optionally bound to a schema and a change stream.

    Bound to another service's schema, it is pinned to schema_version, by default the latest. A taken
    name is a 409.
    """
    check_collection_name(name)
    if kind not in CollectionKind.values:
        raise ValidationFailed(
            "kind must be records or stream.",
            errors=[{"path": "/kind", "message": "must be one of records, stream."}],
        )
    if schema is not None:
        _check_bindable(kind, schema)
    pinned = _pinned_version(owner, schema, schema_version, current=UNCHANGED)
    if change_stream is not None:
        _check_change_stream(kind, owner, change_stream)
    try:
        with transaction.atomic():
            collection = Collection.objects.create(
                name=name,
                owner=owner,
                kind=kind,
                description=description,
                require_if_match=require_if_match,
                schema=schema,
                schema_version=pinned,
                change_stream=change_stream,
            )
    except IntegrityError:
        raise Conflict(f"A collection named {name!r} already exists.", code="collection_exists")
    audit_write(objects=[collection], actor=actor, comment="collection created")
    return collection


@transaction.atomic
def collection_update(
    *,
    collection: Collection,
    actor: Actor,
    description: str | None = None,
    require_if_match: bool | None = None,
    schema: "Schema | object | None" = UNCHANGED,
    schema_version: int | object | None = UNCHANGED,
    change_stream: "Collection | object | None" = UNCHANGED,
) -> Collection:
    """Change the mutable settings of a collection. Locks its row until commit.

    Binding a schema (or another one), or moving the pinned schema_version, first checks every stored
    record against the version the collection will validate against and refuses with 409 if any fails;
    `schema=None` unbinds. See _pinned_version for which version that is.
    """
    collection = (
        # of=self: PostgreSQL cannot lock the nullable side of the outer join to the schema.
        Collection.objects.select_for_update(of=("self",))
        .select_related("owner", "schema")
        .get(pk=collection.pk)
    )
    changed = []
    rebound = schema is not UNCHANGED and (schema.pk if schema else None) != collection.schema_id
    target = schema if rebound else collection.schema
    current = UNCHANGED if rebound else collection.schema_version
    pinned = _pinned_version(collection.owner, target, schema_version, current=current)
    if rebound or pinned != collection.schema_version:
        if target is not None:
            _check_bindable(collection.kind, target)
            collection_schema_check(collection=collection, schema=target, version=pinned)
        if rebound:
            collection.schema = target
            changed.append("schema")
        if pinned != collection.schema_version:
            collection.schema_version = pinned
            changed.append("schema_version")
    if (
        change_stream is not UNCHANGED
        and (change_stream.pk if change_stream else None) != collection.change_stream_id
    ):
        if change_stream is not None:
            _check_change_stream(collection.kind, collection.owner, change_stream)
        collection.change_stream = change_stream
        changed.append("change_stream")
    if description is not None and description != collection.description:
        collection.description = description
        changed.append("description")
    if require_if_match is not None and require_if_match != collection.require_if_match:
        collection.require_if_match = require_if_match
        changed.append("require_if_match")
    if changed:
        collection.save(update_fields=[*changed, "updated_at"])
        audit_write(objects=[collection], actor=actor, comment="changed " + ", ".join(changed))
    return collection


@transaction.atomic
def collection_delete(*, collection: Collection, actor: Actor, force: bool) -> None:
    """Delete a collection: only when it is empty, unless force (operators).

    A forced delete first records a deletion in the history of every record it removes, in batches.
    """
    locked = (
        Collection.objects.select_for_update(of=("self",))
        .select_related("owner", "change_stream")
        .get(pk=collection.pk)
    )
    sources = list(locked.change_sources.order_by("name").values_list("name", flat=True))
    if sources:
        raise Conflict(
            f"{locked.name!r} is the change stream of {', '.join(sources)}; unset it there first.",
            code="stream_in_use",
        )
    if locked.kind == CollectionKind.STREAM:  # events are never deleted through the API: ask an operator
        count, held = Event.objects.filter(stream=locked).count(), "events"
    else:
        count, held = Record.objects.filter(collection=locked).count(), "records"
    if count and not force:
        raise Conflict(
            f"Collection {locked.name!r} still holds {count} {held}; "
            + (
                "delete them first, or ask an operator."
                if held == "records"
                else "only an operator may delete it."
            ),
            code="collection_not_empty",
            count=count,
        )
    if count and held == "records":
        changes_to = locked.change_stream
        state = WriteState(
            schema=None,
            change_stream_id=changes_to.pk if changes_to else None,
            change_stream_name=changes_to.name if changes_to else "",
        )
        now, batch = timezone.now(), []
        records = Record.objects.select_for_update(of=("self",)).filter(collection=locked).order_by("key")
        for record in records.iterator(chunk_size=1000):
            record.version, record.deleted = record.version + 1, True
            record.updated_at, record.updated_by = now, actor.label
            batch.append(record_row(record))
            if len(batch) == 1000:
                history_write(rows=batch, actor=actor, comment=f"deleted with collection {locked.name}")
                _record_changed(state, locked, [("deleted", row) for row in batch], actor)
                batch = []
        history_write(rows=batch, actor=actor, comment=f"deleted with collection {locked.name}")
        _record_changed(state, locked, [("deleted", row) for row in batch], actor)
    audit_write(objects=[locked, *locked.grants.all()], actor=actor, comment="collection deleted")
    locked.delete()


@transaction.atomic
def grant_set(*, collection: Collection, service_name: str, access: str, actor: Actor) -> tuple[Grant, bool]:
    """Give service_name read or write access to collection; granting again changes the access."""
    if access not in Access.values:
        raise ValidationFailed(
            "access must be read or write.", errors=[{"path": "/access", "message": "must be read or write."}]
        )
    service = Service.objects.filter(name=service_name).first()
    if service is None:
        raise ValidationFailed(
            f"There is no service named {service_name!r}.",
            code="unknown_service",
            errors=[{"path": "/service", "message": "no such service."}],
        )
    if service.pk == collection.owner_id:
        raise ValidationFailed(
            "The owner already has full access to its collection.",
            code="grant_to_owner",
            errors=[{"path": "/service", "message": "is the owner of the collection."}],
        )
    grant, created = Grant.objects.select_for_update(of=("self",)).get_or_create(
        collection=collection, service=service, defaults={"access": access}
    )
    if created:
        audit_write(objects=[grant], actor=actor, comment=f"granted {access} to {service.name}")
    elif grant.access != access:
        grant.access = access
        grant.save(update_fields=["access", "updated_at"])
        audit_write(objects=[grant], actor=actor, comment=f"changed grant of {service.name} to {access}")
    return grant, created


@transaction.atomic
def grant_revoke(*, collection: Collection, service_name: str, actor: Actor) -> None:
    """Remove a service's grant; the service then gets 404 for the collection."""
    grant = (
        Grant.objects.select_for_update(of=("self",))
        .filter(collection=collection, service__name=service_name)
        .order_by()
        .first()
    )
    if grant is None:
        raise NotFound(f"{service_name!r} has no grant on {collection.name!r}.", code="grant_not_found")
    audit_write(objects=[grant], actor=actor, comment=f"revoked the grant of {service_name}")
    grant.delete()


# --- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkItem:
    key: str
    version: int
    created: bool


def _check_key(key, *, path: str = "/key") -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValidationFailed(
            "key must be 1 to 200 characters: letters, digits, '.', '_', ':' and '-', starting with a "
            "letter or digit.",
            code="invalid_key",
            errors=[{"path": path, "message": f"does not match {KEY_PATTERN}"}],
        )
    if key == "bulk":  # /records/bulk/ is the bulk endpoint, so such a record could never be read.
        raise ValidationFailed(
            "The key 'bulk' is reserved: its URL is the bulk endpoint.",
            code="invalid_key",
            errors=[{"path": path, "message": "is reserved."}],
        )
    return key


def _check_if_match(existing: Record | None, if_match: IfMatch, key: str) -> None:
    if if_match is None:
        return
    if existing is None:
        raise PreconditionFailed(f"If-Match was given but there is no record {key!r}.", current_version=None)
    if if_match != "*" and existing.version not in if_match:
        raise PreconditionFailed(
            f"Record {key!r} is at version {existing.version}, not the one in If-Match.",
            current_version=existing.version,
        )


def _check_if_match_required(collection: Collection, existing: Record | None, if_match: IfMatch) -> None:
    if existing is not None and if_match is None and collection.require_if_match:
        raise PreconditionRequired(
            f"Collection {collection.name!r} requires If-Match on updates and deletes of existing records.",
        )


def _locked_record(collection: Collection, key: str) -> Record | None:
    """The record, locked FOR UPDATE until commit (only the record: not its collection's row)."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    found = rows.fetch_one(
        f"SELECT {rows.columns(Record, 'r')} FROM {rows.table(Record)} r "  # noqa: S608 - names from the model
        f"WHERE r.collection_id = %s AND r.key = %s{lock}",
        [collection.pk, key],
        (Record,),
        router.db_for_write(Record),
    )
    if found is None:
        return None
    (record,) = found
    record.collection = collection
    return record


def _next_versions(ids: dict[str, uuid.UUID]) -> dict[str, int]:
    """The version a new record of each key (key: record id) starts at: one past its last before deletion."""
    keys = {pk: key for key, pk in ids.items()}
    last = RecordTombstone.objects.filter(pk__one_of=list(keys)).values_list("pk", "version")
    versions = dict.fromkeys(ids, 1)
    for pk, version in last:
        versions[keys[pk]] = version + 1
    return versions


def _store(*, created: list[dict], updated: list[dict], actor: Actor, comment: str) -> None:
    """Write record rows and their history; a key created meanwhile by another request is a 409.

    On PostgreSQL a created key that exists is skipped by the statement (ON CONFLICT DO NOTHING) and
    noticed by the count, so no savepoint is needed; the 409 rolls the whole write back.
    """
    concurrent = Conflict(
        "A record with this key was created concurrently; retry the request.", code="concurrent_write"
    )
    if not created or connection.vendor == "postgresql":
        written = store_records(created=created, updated=updated, actor=actor, comment=comment)
        if written < len(created) + len(updated):
            raise concurrent
        return
    try:
        with transaction.atomic():
            store_records(created=created, updated=updated, actor=actor, comment=comment)
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            raise concurrent
        raise


def _is_unique_violation(exc: IntegrityError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is not None:  # PostgreSQL: 23505 unique_violation
        return sqlstate == "23505"
    return "UNIQUE constraint failed" in str(exc)


def _new_row(
    collection: Collection,
    key: str,
    data: dict,
    version: int,
    actor: Actor,
    now,
    schema_version: int | None,
    pk: uuid.UUID | None = None,
) -> dict:
    return {
        "id": pk or record_pk(collection.pk, key),
        "collection_id": collection.pk,
        "key": key,
        "data": data,
        "version": version,
        "schema_version": schema_version,
        "deleted": False,
        "created_at": now,
        "updated_at": now,
        "created_by": actor.label,
        "updated_by": actor.label,
    }


def _update(record: Record, data: dict, actor: Actor, schema_version: int | None, comment: str) -> Record:
    record.data = data
    record.version += 1
    record.schema_version = schema_version
    record.updated_at = timezone.now()
    record.updated_by = actor.label
    _store(created=[], updated=[record_row(record)], actor=actor, comment=comment)
    return record


def _create(
    collection: Collection,
    key: str,
    data: dict,
    actor: Actor,
    schema_version: int | None,
    comment: str,
    version: int | None = None,
) -> Record:
    """Create the record (its key is free) at version, or else at the key's next version."""
    if version is None:
        version = _next_versions({key: record_pk(collection.pk, key)})[key]
    row = _new_row(collection, key, data, version, actor, timezone.now(), schema_version)
    _store(created=[row], updated=[], actor=actor, comment=comment)
    record = Record(**row)
    record.collection = collection
    return record


def _schema_mismatch(
    collection: Collection, version: int, errors: list[dict], index: int | None = None
) -> ValidationFailed:
    return ValidationFailed(
        f"The data does not match the schema of {collection.name!r} (version {version}): "
        f"{errors[0]['path']}: {errors[0]['message']}",
        code="schema_validation_failed",
        errors=errors,
        schema_version=version,
        index=index,
    )


def _conform(collection: Collection, state: WriteState, data: dict) -> int | None:
    """Validate data against the collection's schema version (its pin, or the latest); returns it."""
    if state.schema is None:
        return None
    errors = data_errors(state.schema.validator, data)
    if errors:
        raise _schema_mismatch(collection, state.schema.version, errors)
    return state.schema.version


def _record_changed(
    state: WriteState, collection: Collection, changes: list[tuple[str, dict]], actor: Actor
) -> None:
    """Append record.created / record.updated / record.deleted events to the change stream, if any.

    Runs in the write's transaction: a committed write always has its events, a rolled-back one never.
    Event ids derive from the record and its version, so the same change can never be appended twice.
    Every record write passes here, so here it is also logged (on commit: key, version, op; no data).
    """
    log_records_changed(collection.name, changes, actor=actor.label)
    if state.change_stream_id is None or not changes:
        return
    prepared = [
        (
            uuid.uuid5(uuid.NAMESPACE_URL, f"nucleus:change:{row['id']}:{row['version']}"),
            f"record.{change}",
            {
                "collection": collection.name,
                "key": row["key"],
                "version": row["version"],
                "data": row["data"],
            },
        )
        for change, row in changes
    ]
    stream = Collection(pk=state.change_stream_id, name=state.change_stream_name)
    _append(stream, prepared, producer=actor.label, compare=False)


@transaction.atomic
def record_create(*, collection: Collection, key: str | None, data, actor: Actor) -> Record:
    """Create a record under key (a new UUID when None); an existing key is a 409."""
    require_records(collection)
    key = str(uuid.uuid4()) if key is None else _check_key(key)
    check_record_data(data)
    state = collection_write_state(collection)
    schema_version = _conform(collection, state, data)
    pk = record_pk(collection.pk, key)
    # Whether the key is taken, and the last version of a deleted record of that key: one query.
    exists, last_version = rows.fetch_one(
        f"SELECT EXISTS (SELECT 1 FROM {rows.table(Record)} WHERE collection_id = %s AND key = %s), "  # noqa: S608
        f"(SELECT version FROM {rows.table(RecordTombstone)} WHERE id = %s)",
        [collection.pk, key, RecordTombstone._meta.pk.get_db_prep_value(pk, connection)],
        (None, None),
        router.db_for_write(Record),
    )
    if exists:
        raise Conflict(f"Record {key!r} already exists in {collection.name!r}.", code="record_exists")
    record = _create(
        collection, key, data, actor, schema_version, comment="created", version=(last_version or 0) + 1
    )
    _record_changed(state, collection, [("created", record_row(record))], actor)
    return record


@transaction.atomic
def record_put(
    *,
    collection: Collection,
    key: str,
    data,
    actor: Actor,
    if_match: IfMatch = None,
    if_none_match: bool = False,
) -> tuple[Record, bool]:
    """Replace the record's data, or create it; returns (record, created). Locks the row until commit."""
    require_records(collection)
    _check_key(key)
    check_record_data(data)
    return _put(collection, key, data, actor, if_match, if_none_match, comment=None)


def _put(collection, key, data, actor, if_match, if_none_match, comment):
    state = collection_write_state(collection)
    schema_version = _conform(collection, state, data)
    existing = _locked_record(collection, key)
    if if_none_match and existing is not None:
        raise PreconditionFailed(
            f"Record {key!r} exists and If-None-Match is *.", current_version=existing.version
        )
    _check_if_match(existing, if_match, key)
    _check_if_match_required(collection, existing, if_match)
    if existing is None:
        record, created = _create(collection, key, data, actor, schema_version, comment or "created"), True
    else:
        record, created = _update(existing, data, actor, schema_version, comment or "replaced"), False
    _record_changed(state, collection, [("created" if created else "updated", record_row(record))], actor)
    return record, created


@transaction.atomic
def record_patch(
    *, collection: Collection, key: str, patch, actor: Actor, if_match: IfMatch = None
) -> Record:
    """Apply a JSON merge patch (RFC 7386) to the record's data. Locks the row until commit."""
    require_records(collection)
    if not isinstance(patch, dict):
        raise ValidationFailed(
            "data must be a JSON object (a merge patch).",
            errors=[{"path": "/data", "message": "must be an object."}],
        )
    state = collection_write_state(collection)
    existing = _locked_record(collection, key)
    _check_if_match(existing, if_match, key)
    if existing is None:
        raise NotFound(f"There is no record {key!r} in {collection.name!r}.", code="record_not_found")
    _check_if_match_required(collection, existing, if_match)
    merged = merge_patch(existing.data, patch)
    check_record_data(merged)
    record = _update(existing, merged, actor, _conform(collection, state, merged), comment="patched")
    _record_changed(state, collection, [("updated", record_row(record))], actor)
    return record


@transaction.atomic
def record_delete(*, collection: Collection, key: str, actor: Actor, if_match: IfMatch = None) -> None:
    """Delete the record; its history, including the deletion, stays and can be reverted."""
    require_records(collection)
    state = collection_write_state(collection)
    existing = _locked_record(collection, key)
    _check_if_match(existing, if_match, key)
    if existing is None:
        raise NotFound(f"There is no record {key!r} in {collection.name!r}.", code="record_not_found")
    _check_if_match_required(collection, existing, if_match)
    now = timezone.now()
    existing.version += 1
    existing.deleted = True
    existing.updated_at = now
    existing.updated_by = actor.label
    history_write(rows=[record_row(existing)], actor=actor, comment="deleted")
    RecordTombstone.objects.update_or_create(
        pk=existing.pk,
        defaults={
            "collection": collection,
            "key": key,
            "version": existing.version,
            "deleted_at": now,
            "deleted_by": actor.label,
        },
    )
    Record.objects.filter(pk=existing.pk).delete()
    _record_changed(state, collection, [("deleted", record_row(existing))], actor)


@transaction.atomic
def record_revert(
    *, collection: Collection, key: str, version: int, actor: Actor, if_match: IfMatch = None
) -> tuple[Record, bool]:
    """Write a new version whose data equals version `version`; recreates a deleted record."""
    require_records(collection)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationFailed(
            "version must be a positive integer.",
            errors=[{"path": "/version", "message": "must be an integer >= 1."}],
        )
    entry = history_entry(record_pk(collection.pk, key), version)
    if entry is None:
        raise NotFound(f"Record {key!r} has no version {version}.", code="version_not_found")
    return _put(
        collection, key, entry["data"], actor, if_match, False, comment=f"reverted to version {version}"
    )


def check_batch(items, name: str) -> None:
    """A batch (records, events, operations) is a list of 1 to NUCLEUS_MAX_BATCH items: else 422."""
    if not isinstance(items, list) or not items:
        raise ValidationFailed(
            f"{name} must be a non-empty list.",
            errors=[{"path": f"/{name}", "message": "must be a non-empty list."}],
        )
    if len(items) > settings.NUCLEUS_MAX_BATCH:
        limit = settings.NUCLEUS_MAX_BATCH
        raise ValidationFailed(
            f"At most {limit} {name} per request.",
            code="too_many_items",
            errors=[{"path": f"/{name}", "message": f"has {len(items)} items; the limit is {limit}."}],
        )


def _bulk_prepare(items) -> list[tuple[str, dict]]:
    check_batch(items, "records")
    errors: list[dict] = []
    prepared: list[tuple[str, dict]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"/records/{index}"
        try:
            if not isinstance(item, dict):
                raise ValidationFailed(
                    "not an object", errors=[{"path": path, "message": "must be an object."}]
                )
            unknown = set(item) - {"key", "data"}
            if unknown:
                raise ValidationFailed(
                    "unknown fields",
                    errors=[{"path": f"{path}/{sorted(unknown)[0]}", "message": "unknown field."}],
                )
            key = item.get("key")
            key = str(uuid.uuid4()) if key is None else _check_key(key, path=f"{path}/key")
            if "data" not in item:
                raise ValidationFailed(
                    "no data", errors=[{"path": f"{path}/data", "message": "is required."}]
                )
            check_record_data(item["data"], path=f"{path}/data")
        except ContentTooLarge as exc:
            exc.extra["index"] = index
            raise
        except ValidationFailed as exc:
            errors.extend(exc.errors or [{"path": path, "message": exc.detail}])
            continue
        if key in seen:
            errors.append({"path": f"{path}/key", "message": f"repeats the key of record {seen[key]}."})
            continue
        seen[key] = index
        prepared.append((key, item["data"]))
    if errors:
        first = errors[0]["path"].split("/")[2]
        raise ValidationFailed(
            f"Record {first} is invalid ({len(errors)} problems in all); nothing was written.",
            errors=errors[:100],
            index=int(first),
        )
    return prepared


@transaction.atomic
def records_bulk(*, collection: Collection, mode: str, items, actor: Actor) -> list[BulkItem]:
    """Insert or upsert up to 1000 records, all or nothing, with set-based statements and bulk history."""
    require_records(collection)
    if mode not in ("insert", "upsert"):
        raise ValidationFailed(
            "mode must be insert or upsert.",
            errors=[{"path": "/mode", "message": "must be insert or upsert."}],
        )
    prepared = _bulk_prepare(items)
    keys = [key for key, _ in prepared]
    index_of = {key: index for index, key in enumerate(keys)}
    state = collection_write_state(collection)
    bound = state.schema
    schema_version = bound.version if bound else None
    if bound is not None:
        errors = []
        for index, (_, data) in enumerate(prepared):
            errors += data_errors(bound.validator, data, path=f"/records/{index}/data")
        if errors:
            first = int(errors[0]["path"].split("/")[2])
            raise _schema_mismatch(collection, bound.version, errors[:100], index=first)
    existing = {
        row[0]: row
        for row in Record.objects.select_for_update(of=("self",))
        .order_by()
        .filter(collection=collection, key__one_of=keys)
        .values_list("key", "version", "created_at", "created_by")
    }
    if existing and mode == "insert":
        taken = sorted(existing, key=index_of.get)
        raise Conflict(
            f"Record {index_of[taken[0]]} has key {taken[0]!r}, which exists already ({len(taken)} in all); "
            "nothing was written.",
            code="record_exists",
            errors=[
                {"path": f"/records/{index_of[key]}/key", "message": "exists already."} for key in taken[:100]
            ],
            index=index_of[taken[0]],
        )
    if existing and collection.require_if_match:
        first = min(existing, key=index_of.get)
        raise PreconditionRequired(
            f"Collection {collection.name!r} requires If-Match to replace records; record {index_of[first]} "
            f"({first!r}) exists. Use PUT with If-Match or a transaction.",
            index=index_of[first],
        )
    now = timezone.now()
    ids = {key: record_pk(collection.pk, key) for key in keys if key not in existing}
    start = _next_versions(ids)
    created, updated = [], []
    for key, data in prepared:
        if key in existing:
            _, version, created_at, created_by = existing[key]
            row = _new_row(collection, key, data, version + 1, actor, now, schema_version)
            row["created_at"], row["created_by"] = created_at, created_by
            updated.append(row)
        else:
            created.append(_new_row(collection, key, data, start[key], actor, now, schema_version, ids[key]))
    _store(created=created, updated=updated, actor=actor, comment=f"bulk {mode}")
    changes = [("created", row) for row in created] + [("updated", row) for row in updated]
    _record_changed(state, collection, sorted(changes, key=lambda change: index_of[change[1]["key"]]), actor)
    versions = {row["key"]: row["version"] for row in created + updated}
    return [BulkItem(key=key, version=versions[key], created=key not in existing) for key in keys]


# --- streams ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Appended:
    """The outcome of an append: the offsets of the request's events, in request order.

    first_offset and last_offset span the events this append added; None when it added none.
    """

    first_offset: int | None
    last_offset: int | None
    events: list[tuple[str, int]]
    appended: int  # how many were new; the rest were already in the stream (same id)
    duplicates: list[bool]  # per event: its id was already in the stream, or earlier in the request

    def results(self) -> list[dict]:
        """Each event as the API reports it: {"id", "offset", "duplicate"}."""
        return [
            {"id": event_id, "offset": offset, "duplicate": duplicate}
            for (event_id, offset), duplicate in zip(self.events, self.duplicates, strict=True)
        ]


def _prepare_events(events) -> list[tuple[uuid.UUID, str, dict]]:
    check_batch(events, "events")
    errors: list[dict] = []
    prepared = []
    for index, event in enumerate(events):
        path = f"/events/{index}"
        if not isinstance(event, dict):
            errors.append({"path": path, "message": "must be an object."})
            continue
        unknown = sorted(set(event) - {"id", "type", "data"})
        errors += [{"path": f"{path}/{name}", "message": "unknown field."} for name in unknown]
        raw_id = event.get("id")
        try:
            event_id = (
                uuid.uuid4() if raw_id is None else uuid.UUID(raw_id) if isinstance(raw_id, str) else None
            )
        except ValueError:
            event_id = None
        if event_id is None:
            errors.append({"path": f"{path}/id", "message": "must be a UUID string."})
        event_type = event.get("type")
        if not isinstance(event_type, str) or not 1 <= len(event_type) <= 200 or not event_type.isprintable():
            errors.append(
                {"path": f"{path}/type", "message": "must be a printable string of 1 to 200 characters."}
            )
        if "data" not in event:
            errors.append({"path": f"{path}/data", "message": "is required."})
        else:
            try:
                check_record_data(event["data"], path=f"{path}/data")
            except ContentTooLarge as exc:
                exc.extra["index"] = index
                raise
            except ValidationFailed as exc:
                errors.extend(exc.errors or [{"path": f"{path}/data", "message": exc.detail}])
        prepared.append((event_id, event_type, event.get("data")))
    if errors:
        first = int(errors[0]["path"].split("/")[2])
        raise ValidationFailed(
            f"Event {first} is invalid ({len(errors)} problems in all); nothing was appended.",
            errors=errors[:100],
            index=first,
        )
    return prepared


def _lock_stream(stream: Collection) -> int:
    """Lock the stream's row until commit and return its last offset: appenders queue here."""
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_update else ""
    found = rows.fetch_one(
        f"SELECT last_offset FROM {rows.table(Collection)} WHERE id = %s{lock}",  # noqa: S608
        [stream.pk],
        (None,),
        router.db_for_write(Collection),
    )
    if found is None:
        raise NotFound("The stream was deleted meanwhile.", code="collection_not_found")
    return found[0]


def _same_json(a, b) -> bool:
    """Whether two JSON values are equal: member order and the spelling of numbers (1, 1.0, 1e0) do
    not matter; types do (true is not 1, "1" is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        # repr is a float's shortest exact spelling, so 0.1 stays 0.1 and 1e300 equals 10**300.
        return Decimal(repr(a) if isinstance(a, float) else a) == Decimal(
            repr(b) if isinstance(b, float) else b
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(value, b[name]) for name, value in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _event_id_conflict(conflicts: list[tuple[int, uuid.UUID, int]]) -> Conflict:
    index, event_id, offset = conflicts[0]
    return Conflict(
        f"Event {index} reuses the id {event_id} of the event at offset {offset} with another type or "
        f"data ({len(conflicts)} such events in all); nothing was appended.",
        code="event_id_conflict",
        errors=[
            {
                "path": f"/events/{i}/id",
                "message": f"is the id of the event at offset {at}, whose type or data differ.",
            }
            for i, _, at in conflicts[:100]
        ],
        index=index,
        offset=offset,
    )


def _append(
    stream: Collection,
    prepared: list[tuple[uuid.UUID, str, dict]],
    *,
    producer: str,
    expected_last_offset: int | None = None,
    may_exist: bool = True,
    compare: bool = True,
) -> Appended:
    """Append under the stream's lock: ids already in the stream keep their offsets, new ones get the next.

    An id that is already in the stream (or earlier in the request) is a duplicate when its type and
    data are the same, and a 409 event_id_conflict when they differ (compare=False skips the check:
    change events, whose ids are derived from their content). may_exist=False: every id is new (made
    here, uuid4), so the stream need not be searched for them.
    """
    last_offset = _lock_stream(stream)
    ids = [event_id for event_id, _, _ in prepared]
    known: dict[uuid.UUID, tuple[int, str | None, dict | None]] = {}
    if may_exist:
        found = Event.objects.filter(stream_id=stream.pk, event_id__one_of=ids)
        if compare:
            known = {
                event_id: (offset, t, data)
                for event_id, offset, t, data in found.values_list("event_id", "offset", "type", "data")
            }
        else:
            known = {
                event_id: (offset, None, None) for event_id, offset in found.values_list("event_id", "offset")
            }
    fresh, duplicates, conflicts = [], [], []
    for index, (event_id, event_type, data) in enumerate(prepared):
        if event_id not in known:
            known[event_id] = (last_offset + len(fresh) + 1, event_type, data)
            fresh.append((event_id, event_type, data))
            duplicates.append(False)
            continue
        offset, known_type, known_data = known[event_id]
        if compare and (known_type != event_type or not _same_json(known_data, data)):
            conflicts.append((index, event_id, offset))
        duplicates.append(True)
    if conflicts:
        raise _event_id_conflict(conflicts)
    if fresh and expected_last_offset is not None and expected_last_offset != last_offset:
        raise Conflict(
            f"The stream's last offset is {last_offset}, not {expected_last_offset}; nothing was appended.",
            code="unexpected_last_offset",
            last_offset=last_offset,
        )
    new_last = last_offset + len(fresh)
    if fresh:
        now = timezone.now()
        bulk.insert(
            Event,
            [
                {
                    "stream_id": stream.pk,
                    "offset": known[event_id][0],
                    "event_id": event_id,
                    "type": event_type,
                    "data": data,
                    "producer": producer,
                    "created_at": now,
                }
                for event_id, event_type, data in fresh
            ],
        )
        _move_head(stream.pk, new_last)
        log_events_appended(
            stream=stream.name,
            first_offset=last_offset + 1,
            last_offset=new_last,
            actor=producer,
        )
    return Appended(
        first_offset=last_offset + 1 if fresh else None,
        last_offset=new_last if fresh else None,
        events=[(str(event_id), known[event_id][0]) for event_id in ids],
        appended=len(fresh),
        duplicates=duplicates,
    )


def _move_head(stream_id: int, last_offset: int) -> None:
    """Store the stream's new last offset and wake long-polling readers when the transaction commits
    (PostgreSQL NOTIFY, in the same statement; on SQLite core.long_polls reads the offsets)."""
    update = f"UPDATE {rows.table(Collection)} SET last_offset = %s WHERE id = %s"  # noqa: S608
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH moved AS ({update} RETURNING id) SELECT pg_notify(%s, %s) FROM moved",  # noqa: S608
                [last_offset, stream_id, long_polls.CHANNEL, long_polls.notification(stream_id, last_offset)],
            )
        else:
            cursor.execute(update, [last_offset, stream_id])


@transaction.atomic
def stream_append(*, stream: Collection, events, actor: Actor, expected_last_offset=None) -> Appended:
    """Append 1 to 1000 events atomically at the next offsets. Locks the stream row until commit.

    An event whose id is already in the stream with the same type and data is a duplicate: it is not
    appended again and its original offset is returned; with another type or data it is a 409
    event_id_conflict and nothing is appended. When every event is a duplicate, the request is a
    retry that succeeded before and expected_last_offset is not checked; otherwise a differing
    expected_last_offset is a 409.
    """
    require_stream(stream)
    if expected_last_offset is not None and (
        isinstance(expected_last_offset, bool)
        or not isinstance(expected_last_offset, int)
        or expected_last_offset < 0
    ):
        raise ValidationFailed(
            "expected_last_offset must be an integer >= 0.",
            errors=[{"path": "/expected_last_offset", "message": "must be an integer >= 0."}],
        )
    prepared = _prepare_events(events)
    return _append(
        stream,
        prepared,
        producer=actor.label,
        expected_last_offset=expected_last_offset,
        may_exist=any(event.get("id") is not None for event in events),
    )


@transaction.atomic
def consumer_position_set(
    *,
    stream: Collection,
    consumer: str,
    offset,
    actor: Actor,
    owner: Service | None = None,
    force: bool = False,
) -> ConsumerPosition:
    """Move owner's consumer (by default the stream owner's), creating it; backwards only with force.

    Who may move whose consumer is the caller's business (a service its own, operators any).
    """
    require_stream(stream)
    _check_key(consumer, path="/consumer")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationFailed(
            "offset must be an integer >= 0.",
            errors=[{"path": "/offset", "message": "must be an integer >= 0."}],
        )
    last_offset = Collection.objects.values_list("last_offset", flat=True).get(pk=stream.pk)
    if offset > last_offset:
        raise ValidationFailed(
            f"offset {offset} is beyond the stream's last offset {last_offset}.",
            code="offset_beyond_end",
            errors=[{"path": "/offset", "message": f"must be at most {last_offset}."}],
            last_offset=last_offset,
        )
    owner_id = owner.pk if owner is not None else stream.owner_id
    now = timezone.now()
    position, created = ConsumerPosition.objects.select_for_update(of=("self",)).get_or_create(
        stream=stream,
        owner_id=owner_id,
        consumer=consumer,
        defaults={"offset": offset, "updated_at": now, "updated_by": actor.label},
    )
    if not created and offset != position.offset:
        if offset < position.offset and not force:
            raise Conflict(
                f"{consumer!r} is at {position.offset}; moving it back to {offset} needs force.",
                code="position_moves_backwards",
                offset=position.offset,
            )
        position.offset, position.updated_at, position.updated_by = offset, now, actor.label
        position.save(update_fields=["offset", "updated_at", "updated_by"])
    return position


@transaction.atomic
def stream_truncate(*, stream: Collection, before: int, force: bool = False) -> int:
    """Delete the events below offset `before`; refuses to drop events a consumer has not processed.

    Offsets are never reused: last_offset stays. Returns how many events were removed.
    """
    require_stream(stream)
    last_offset = _lock_stream(stream)
    if before < 1 or before > last_offset + 1:
        raise ValidationFailed(f"before must be between 1 and {last_offset + 1}.", code="invalid_offset")
    # Every service's consumers count, not only the owner's: truncating drops events for all of them.
    behind = ConsumerPosition.objects.filter(stream=stream, offset__lt=before - 1)
    ordered = behind.order_by("offset", "owner__name", "consumer")
    slowest = list(ordered.values_list("consumer", "owner__name", "offset")[:10])
    if slowest and not force:
        names = ", ".join(f"{name} of {service} (at {offset})" for name, service, offset in slowest)
        if len(slowest) == 10 and (more := behind.count() - 10):
            names += f" and {more} more"
        raise Conflict(
            f"Consumers have not processed the events before {before}: {names}. "
            "Use --force to drop them anyway.",
            code="consumers_behind",
        )
    deleted, _ = Event.objects.filter(stream=stream, offset__lt=before).delete()
    return deleted


# --- transactions ----------------------------------------------------------------------------------

TRANSACTION_OPS = ("create", "put", "patch", "delete", "append")
_OP_FIELDS = {
    "create": ({"op", "collection", "data"}, {"key"}),
    "put": ({"op", "collection", "key", "data"}, {"if_match"}),
    "patch": ({"op", "collection", "key", "data"}, {"if_match"}),
    "delete": ({"op", "collection", "key"}, {"if_match"}),
    "append": ({"op", "collection", "events"}, {"expected_last_offset"}),
}


def _op_if_match(value, path: str) -> IfMatch:
    """A transaction's if_match: a version number, "*", or an ETag string such as '"3"'."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return frozenset({value})
    if value == "*":
        return "*"
    if isinstance(value, str) and value.strip('"').isdigit() and value.isascii():
        return frozenset({int(value.strip('"'))})
    raise ValidationFailed(
        'if_match must be a version number, "*" or an ETag such as "\\"3\\"".',
        errors=[{"path": f"{path}/if_match", "message": "is not a version or an ETag."}],
    )


def _with_operation(exc: NucleusError, index: int) -> NucleusError:
    """Point a refusal at the operation that caused it: `operation` and errors under /operations/i."""
    exc.extra["operation"] = index
    exc.extra.pop("index", None)
    if exc.errors:
        exc.errors = [{**error, "path": f"/operations/{index}{error['path']}"} for error in exc.errors]
    exc.detail = f"Operation {index}: {exc.detail}"
    return exc


@transaction.atomic
def transaction_execute(*, operations, actor: Actor, resolve) -> list[dict]:
    """Apply up to 1000 record and event operations across collections, all or nothing.

    `resolve(name, op)` returns the collection the caller may write (raising 404/403 as the API
    would). The first failing operation's refusal is raised with `operation` = its index; nothing is
    applied then. Each operation keeps its own preconditions, schema validation, history and change
    events.
    """
    check_batch(operations, "operations")
    results = []
    for index, operation in enumerate(operations):
        try:
            results.append(_execute_operation(operation, actor, resolve))
        except NucleusError as exc:
            raise _with_operation(exc, index) from None
    return results


def _execute_operation(operation, actor: Actor, resolve) -> dict:
    if not isinstance(operation, dict):
        raise ValidationFailed(
            "An operation must be an object.", errors=[{"path": "", "message": "must be an object."}]
        )
    op = operation.get("op")
    if op not in TRANSACTION_OPS:
        raise ValidationFailed(
            "op must be one of " + ", ".join(TRANSACTION_OPS) + ".",
            errors=[{"path": "/op", "message": "is not a known operation."}],
        )
    required, optional = _OP_FIELDS[op]
    problems = [
        {"path": f"/{name}", "message": "unknown field."}
        for name in sorted(set(operation) - required - optional)
    ]
    problems += [
        {"path": f"/{name}", "message": "is required."} for name in sorted(required - set(operation))
    ]
    if problems:
        raise ValidationFailed(f"The {op} operation is invalid.", errors=problems)
    name = operation["collection"]
    # A malformed name (a NUL character, say) must not reach the database query: it would be a 500.
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValidationFailed(
            "collection must be a collection name.",
            errors=[{"path": "/collection", "message": "is not a collection name."}],
        )
    collection = resolve(name, op)
    if op == "append":
        appended = stream_append(
            stream=collection,
            events=operation["events"],
            actor=actor,
            expected_last_offset=operation.get("expected_last_offset"),
        )
        return {
            "op": op,
            "collection": name,
            "first_offset": appended.first_offset,
            "last_offset": appended.last_offset,
            "events": appended.results(),
        }
    if_match = _op_if_match(operation.get("if_match"), "")
    key = operation.get("key")
    if op in ("patch", "delete"):  # create and put check their keys themselves
        _check_key(key)
    if op == "create":
        record, created = (
            record_create(collection=collection, key=key, data=operation["data"], actor=actor),
            True,
        )
    elif op == "put":
        record, created = record_put(
            collection=collection, key=key, data=operation["data"], actor=actor, if_match=if_match
        )
    elif op == "patch":
        record = record_patch(
            collection=collection, key=key, patch=operation["data"], actor=actor, if_match=if_match
        )
        created = False
    else:
        record_delete(collection=collection, key=key, actor=actor, if_match=if_match)
        return {"op": op, "collection": name, "key": key, "deleted": True}
    return {"op": op, "collection": name, "key": record.key, "version": record.version, "created": created}
