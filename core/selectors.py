"""Reads of the core app, scoped by who asks."""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, router
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Substr

from core import long_polls, rows
from core.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from core.models import (
    KEY_PATTERN,
    SERVICE_NAME_PATTERN,
    Access,
    Collection,
    ConsumerPosition,
    Event,
    Grant,
    Record,
    RecordTombstone,
    Service,
    ServiceToken,
)
from core.pages import decode_cursor, encode_cursor, read_page
from core.principals import Principal
from core.tokens import token_hash

if TYPE_CHECKING:
    from schemas.selectors import BoundValidator


class Need(StrEnum):
    READ = "read"
    WRITE = "write"
    MANAGE = "manage"  # change settings and grants: the owner or an operator


def require_operator_perms(principal: Principal, perms: tuple[str, ...]) -> None:
    """403 unless an operator principal holds every Django permission in perms (services pass)."""
    if principal.service is not None:
        return
    missing = [perm for perm in perms if not principal.user.has_perm(perm)]
    if missing:
        raise Forbidden(f"Your account lacks the permission {', '.join(missing)}.")


def token_lookup(plain: str) -> ServiceToken | None:
    """The token row for a presented bearer token, with its service (one query)."""
    db = router.db_for_read(ServiceToken)
    found = rows.fetch_one(
        f"SELECT {rows.columns(ServiceToken, 't')}, {rows.columns(Service, 's')} "  # noqa: S608 - names from models
        f"FROM {rows.table(ServiceToken)} t JOIN {rows.table(Service)} s ON s.id = t.service_id "
        "WHERE t.token_hash = %s",
        [token_hash(plain)],
        (ServiceToken, Service),
        db,
    )
    if found is None:
        return None
    token, token.service = found
    return token


def _collection_named(name: str, service: Service | None) -> Collection | None:
    """The collection with its owner, schema and change stream, and the access granted to service."""
    db = router.db_for_read(Collection)
    Schema = Collection._meta.get_field("schema").related_model  # schemas imports core, not vice versa
    found = rows.fetch_one(
        f"SELECT {rows.columns(Collection, 'c')}, {rows.columns(Service, 'o')}, "  # noqa: S608 - names from models
        f"{rows.columns(Schema, 'sc')}, {rows.columns(Collection, 'cs')}, "
        f"(SELECT g.access FROM {rows.table(Grant)} g WHERE g.collection_id = c.id AND g.service_id = %s) "
        f"FROM {rows.table(Collection)} c JOIN {rows.table(Service)} o ON o.id = c.owner_id "
        f"LEFT JOIN {rows.table(Schema)} sc ON sc.id = c.schema_id "
        f"LEFT JOIN {rows.table(Collection)} cs ON cs.id = c.change_stream_id "
        "WHERE c.name = %s",
        [service.pk if service else None, name],
        (Collection, Service, Schema, Collection, None),
        db,
    )
    if found is None:
        return None
    collection, collection.owner, collection.schema, collection.change_stream, collection.granted = found
    return collection


def collections_visible_to(*, principal: Principal) -> QuerySet[Collection]:
    """Collections the caller may see: all for operators, else owned or granted ones."""
    collections = Collection.objects.select_related("owner", "schema", "change_stream")
    if principal.service is None:
        return collections
    return collections.filter(Q(owner=principal.service) | Q(grants__service=principal.service)).distinct()


def collection_for(*, principal: Principal, name: str, need: Need, perms: tuple[str, ...]) -> Collection:
    """The named collection if the caller may `need` it; 404 when it may not even see it, else 403.

    Services are judged by ownership and grants; operators by the Django permissions in perms.
    """
    collection = _collection_named(name, principal.service)
    if collection is None:
        raise NotFound(f"There is no collection {name!r}.", code="collection_not_found")
    if principal.service is None:
        require_operator_perms(principal, perms)
        return collection
    if collection.owner_id == principal.service.pk:
        return collection
    if collection.granted is None:
        raise NotFound(f"There is no collection {name!r}.", code="collection_not_found")
    if need == Need.WRITE and collection.granted != Access.WRITE:
        raise Forbidden(f"Service {principal.service.name!r} may read {name!r} but not write it.")
    if need == Need.MANAGE:
        raise Forbidden(f"Only the owner of {name!r} or an operator may do this.")
    return collection


def require_records(collection: Collection) -> None:
    """404 for record endpoints on a stream (and for record writes to one)."""
    if collection.kind != "records":
        raise NotFound(
            f"{collection.name!r} is a stream; it has events, not records.", code="not_a_records_collection"
        )


def require_stream(collection: Collection) -> None:
    """404 for event and consumer endpoints on a records collection."""
    if collection.kind != "stream":
        raise NotFound(f"{collection.name!r} holds records, not events.", code="not_a_stream")


def record_get(*, collection: Collection, key: str) -> Record:
    require_records(collection)
    db = router.db_for_read(Record)
    found = rows.fetch_one(
        f"SELECT {rows.columns(Record, 'r')} FROM {rows.table(Record)} r "  # noqa: S608 - names from models
        "WHERE r.collection_id = %s AND r.key = %s",
        [collection.pk, key],
        (Record,),
        db,
    )
    if found is None:
        raise NotFound(f"There is no record {key!r} in {collection.name!r}.", code="record_not_found")
    (record,) = found
    record.collection = collection
    return record


def records_deleted() -> QuerySet[RecordTombstone]:
    """Tombstones of the record keys that are deleted now (not created again), newest deletion first.

    Tombstone and record share the key's id, so this is an indexed anti-join on the primary keys.
    """
    live = Record.objects.filter(pk=OuterRef("pk"))
    return (
        RecordTombstone.objects.filter(~Exists(live))
        .select_related("collection")
        .order_by("-deleted_at", "pk")
    )


# --- listing -------------------------------------------------------------------------------------

KEY_RE = re.compile(KEY_PATTERN[:-1] + r"\Z")
ORDERINGS = ("key", "-key", "updated_at", "-updated_at")


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z.", code="invalid_filter"
        )
    if parsed.tzinfo is None:
        raise BadRequest(f"{name} must include a time zone, e.g. a trailing Z.", code="invalid_filter")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise BadRequest(f"{name} is out of the range of representable times.", code="invalid_filter")


def _where_sqlite(records: QuerySet, where: dict) -> QuerySet:
    """JSON containment (PostgreSQL's @>) for SQLite, through json_type/json_extract/json_each."""
    clauses, params = [], []

    def walk(value, path: str):
        if isinstance(value, dict):
            if not value:
                clauses.append("json_type(core_record.data, %s) = 'object'")
                params.append(path)
            for name, item in value.items():
                if '"' in name or "\\" in name:
                    raise BadRequest(
                        "On SQLite, where keys may not contain '\"' or '\\'.", code="invalid_filter"
                    )
                walk(item, f'{path}."{name}"')
        elif isinstance(value, list):
            clauses.append("json_type(core_record.data, %s) = 'array'")
            params.append(path)
            for item in value:
                if isinstance(item, dict | list):
                    raise BadRequest(
                        "On SQLite, arrays in where may hold only scalars; PostgreSQL supports all.",
                        code="invalid_filter",
                    )
                type_sql, type_params = _sqlite_type_clause("json_each.type", item)
                # type_sql is one of the fixed fragments of _sqlite_type_clause; values are parameters.
                sql = "EXISTS (SELECT 1 FROM json_each(core_record.data, %s) WHERE " + type_sql  # noqa: S608
                params.append(path)
                params.extend(type_params)
                if item is not None and not isinstance(item, bool):
                    sql += " AND json_each.value = %s"
                    params.append(item)
                clauses.append(sql + ")")
        else:
            type_sql, type_params = _sqlite_type_clause("json_type(core_record.data, %s)", value)
            clauses.append(type_sql)
            params.append(path)
            params.extend(type_params)
            if value is not None and not isinstance(value, bool):
                clauses.append("json_extract(core_record.data, %s) = %s")
                params.extend([path, value])

    walk(where, "$")
    return records.extra(where=clauses, params=params) if clauses else records  # noqa: S610


def _sqlite_type_clause(expr: str, value) -> tuple[str, list]:
    if value is None:
        return f"{expr} = 'null'", []
    if isinstance(value, bool):
        return f"{expr} = %s", ["true" if value else "false"]
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise BadRequest(
            "On SQLite, integers in where must fit in 64 bits; PostgreSQL supports all.",
            code="invalid_filter",
        )
    if isinstance(value, int | float):
        return f"{expr} IN ('integer', 'real')", []
    return f"{expr} = 'text'", []


def records_page(
    *,
    collection: Collection,
    limit: int,
    encode: Callable[[Record], bytes],
    cursor: str | None = None,
    ordering: str = "key",
    where: dict | None = None,
    key_prefix: str | None = None,
    updated_after: str | None = None,
    updated_before: str | None = None,
) -> tuple[list[bytes], str | None]:
    """One page of records, encoded, and the cursor of the next (or None); one query (read_page)."""
    require_records(collection)
    if ordering not in ORDERINGS:
        raise BadRequest(f"ordering must be one of {', '.join(ORDERINGS)}.", code="invalid_ordering")
    records = Record.objects.filter(collection=collection)
    if key_prefix:
        records = records.filter(key__startswith=key_prefix)
        if connection.vendor == "sqlite":  # SQLite's LIKE ignores case; keys do not.
            records = records.alias(key_head=Substr("key", 1, len(key_prefix))).filter(key_head=key_prefix)
    if updated_after:
        records = records.filter(updated_at__gt=_parse_time(updated_after, "updated_after"))
    if updated_before:
        records = records.filter(updated_at__lt=_parse_time(updated_before, "updated_before"))
    if where:
        if connection.vendor == "postgresql":
            records = records.filter(data__contains=where)
        else:
            records = _where_sqlite(records, where)
    descending = ordering.startswith("-")
    field = ordering.lstrip("-")
    after = "lt" if descending else "gt"
    if cursor:
        if field == "key":
            (last_key,) = decode_cursor(cursor, 1)
            records = records.filter(**{f"key__{after}": last_key})
        else:
            last_time, last_key = decode_cursor(cursor, 2)
            moment = _parse_time(last_time, "cursor")
            records = records.filter(
                Q(**{f"updated_at__{after}": moment}) | Q(updated_at=moment, **{f"key__{after}": last_key})
            )
    order = [ordering] if field == "key" else [ordering, "-key" if descending else "key"]
    page = read_page(
        records.order_by(*order),
        limit=limit,
        encode=encode,
        row_bytes=settings.NUCLEUS_MAX_RECORD_BYTES,
    )
    next_cursor = None
    if page.more:
        last = page.last
        next_cursor = encode_cursor([last.key] if field == "key" else [last.updated_at.isoformat(), last.key])
    return page.items, next_cursor


# --- the state a write works under -----------------------------------------------------------------


@dataclass(frozen=True)
class WriteState:
    """What a write to a records collection must honour, read under the collection's share lock."""

    schema: "BoundValidator | None"
    change_stream_id: int | None
    change_stream_name: str = ""


def collection_write_state(collection: Collection) -> WriteState:
    """Lock the collection for a write and read its schema version and change stream as they are now.

    The schema version is the collection's pin, or else (the schema owner's own collections) the latest.

    On PostgreSQL this takes a FOR SHARE lock on the collection row until commit, so that binding a
    schema, registering a version or changing the change stream (which lock the row FOR UPDATE and
    check the stored records) cannot interleave with a write working under the previous state, and
    the collection cannot be deleted under the write. A collection deleted before the lock is a 404.
    """
    from schemas.models import SchemaVersion
    from schemas.selectors import bound_validator

    if connection.vendor == "postgresql":
        # Lock first, then read in a second statement: under READ COMMITTED a statement that waited for
        # the lock still reads the snapshot it started with, which lacks a version registered (or a
        # binding made) by the transaction it waited for.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM core_collection WHERE id = %s FOR SHARE", [collection.pk])
    # The pinned version, or else the latest: what the collection validates against.
    bound = (
        f"(SELECT {{}} FROM {rows.table(SchemaVersion)} "  # noqa: S608 - names come from the models
        "WHERE schema_id = c.schema_id AND (c.schema_version IS NULL OR version = c.schema_version) "
        "ORDER BY version DESC LIMIT 1)"
    )
    found = rows.fetch_one(
        f"SELECT c.schema_id, {bound.format('version')}, {bound.format('fingerprint')}, "  # noqa: S608
        f"c.change_stream_id, cs.name FROM {rows.table(Collection)} c "
        f"LEFT JOIN {rows.table(Collection)} cs ON cs.id = c.change_stream_id WHERE c.id = %s",
        [collection.pk],
        (None, None, None, None, None),
        router.db_for_write(Collection),
    )
    if not found:
        raise NotFound(f"Collection {collection.name!r} was deleted meanwhile.", code="collection_not_found")
    schema_id, version, fingerprint, change_stream_id, change_stream_name = found
    return WriteState(
        schema=bound_validator(schema_id, version, fingerprint),
        change_stream_id=change_stream_id,
        change_stream_name=change_stream_name or "",
    )


# --- streams ---------------------------------------------------------------------------------------


def stream_last_offset(stream_id: int) -> int:
    return Collection.objects.filter(pk=stream_id).values_list("last_offset", flat=True).first() or 0


def events_page(
    *, stream: Collection, after: int, limit: int, encode: Callable[[Event], bytes]
) -> tuple[list[bytes], int, int]:
    """Events with offset > after, ascending, encoded: a page (read_page), its next_after and last offset.

    Served by the (stream, offset) index: a page deep in a long stream costs what the first one does.
    The page never goes beyond the last offset it reports, even if appends commit meanwhile. The next
    page starts after next_after, the offset of the page's last event (after itself for no event).
    """
    require_stream(stream)
    last_offset = stream_last_offset(stream.pk)
    events = Event.objects.filter(stream_id=stream.pk, offset__gt=after, offset__lte=last_offset)
    page = read_page(
        events.order_by("offset"), limit=limit, encode=encode, row_bytes=settings.NUCLEUS_MAX_RECORD_BYTES
    )
    return page.items, (page.last.offset if page.last else after), last_offset


def wait_for_events(*, stream: Collection, after: int, timeout: float, caller: str = "") -> None:
    """Return once the stream has an event after `after`, or when timeout seconds have passed.

    Blocks this thread, holding no transaction; the process' stream watcher (core.long_polls) wakes it,
    so the wait takes no database connection of its own. Servers that must not give a thread to a
    waiting reader hand the wait to the event loop instead (EventListView.hand_off_wait).
    """
    require_stream(stream)
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    watcher = long_polls.stream_watcher()
    with watcher.subscribe(stream_id=stream.pk, after=after, caller=caller) as waiting:
        # Subscribed before this read: an append committed after it wakes the wait.
        while stream_last_offset(stream.pk) <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or watcher.closed or not waiting.wait(remaining):
                return
            waiting.rearm()


SERVICE_NAME_RE = re.compile(SERVICE_NAME_PATTERN[:-1] + r"\Z")


def _check_consumer_name(consumer: str) -> None:
    if not KEY_RE.fullmatch(consumer):
        raise ValidationFailed(
            "A consumer name follows the record key rules: 1 to 200 of A-Z a-z 0-9 . _ : -.",
            code="invalid_key",
            errors=[{"path": "/consumer", "message": f"does not match {KEY_PATTERN}"}],
        )


def _no_consumer(stream: Collection, consumer: str, service_name: str) -> NotFound:
    """The one answer for a consumer the caller may not see, or that does not exist: nothing to tell apart."""
    return NotFound(
        f"There is no consumer {consumer!r} of service {service_name!r} on {stream.name!r}.",
        code="consumer_not_found",
    )


def consumer_owner_for(
    *, principal: Principal, stream: Collection, consumer: str, service_name: str | None
) -> tuple[Service, bool]:
    """The service whose consumer the caller addresses, and whether the caller may create and move it.

    A service addresses its own consumers. The stream's owner may name another service to read its
    consumers; operators may name any service (the default is the stream's owner) and move its
    consumers. Any other service named is a 404, the same whether it or its consumer exists or not.
    """
    require_stream(stream)
    if service_name == "":
        service_name = None
    if service_name is not None and not SERVICE_NAME_RE.fullmatch(service_name):
        raise BadRequest(
            "service must be a service name: lower-case letters, digits, '_' and '-', starting with a "
            "letter (at most 63).",
            code="invalid_service",
        )
    _check_consumer_name(consumer)
    caller = principal.service
    if caller is not None and service_name in (None, caller.name):
        return caller, True
    if caller is None and service_name is None:
        return stream.owner, True
    if caller is not None and stream.owner_id != caller.pk:
        raise _no_consumer(stream, consumer, service_name)
    owner = Service.objects.filter(name=service_name).first()
    if owner is None:
        raise _no_consumer(stream, consumer, service_name)
    return owner, caller is None


def consumer_position_get(
    *, stream: Collection, owner: Service, consumer: str, may_create: bool
) -> ConsumerPosition:
    """owner's stored position of consumer; if there is none, an unsaved one at offset 0 (nothing
    processed yet) for a caller that may create it, else a 404."""
    require_stream(stream)
    _check_consumer_name(consumer)
    position = ConsumerPosition.objects.filter(stream=stream, owner=owner, consumer=consumer).first()
    if position is None:
        if not may_create:
            raise _no_consumer(stream, consumer, owner.name)
        position = ConsumerPosition(stream=stream, consumer=consumer, offset=0, updated_at=None)
    position.owner = owner
    return position


def consumers_page(
    *, principal: Principal, stream: Collection, limit: int, cursor: str | None = None
) -> tuple[list[ConsumerPosition], str | None]:
    """One page of the consumers the caller may see, with the stream's last offset, and the next cursor.

    A service sees its own consumers; the stream's owner and operators see every service's. Ordered
    by service (in the order services were created) and name, which the (stream, owner, consumer)
    index serves: a page costs the same however many consumers other services keep.
    """
    require_stream(stream)
    positions = (
        ConsumerPosition.objects.filter(stream_id=stream.pk)
        .select_related("owner")
        .annotate(stream_last_offset=F("stream__last_offset"))
    )
    if principal.service is not None and stream.owner_id != principal.service.pk:
        positions = positions.filter(owner_id=principal.service.pk)
    if cursor:
        owner_id, consumer = decode_cursor(cursor, 2)
        if not (
            owner_id.isascii() and owner_id.isdigit() and len(owner_id) <= 18 and KEY_RE.fullmatch(consumer)
        ):
            raise BadRequest("cursor is not one that Nucleus issued.", code="invalid_cursor")
        positions = positions.filter(owner_id__gte=int(owner_id)).filter(
            Q(owner_id__gt=int(owner_id)) | Q(consumer__gt=consumer)
        )
    page = list(positions.order_by("owner_id", "consumer")[: limit + 1])
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    return page, encode_cursor([str(page[-1].owner_id), page[-1].consumer])
