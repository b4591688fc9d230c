"""Reads of the backups app: the catalog, its freshness, and what a restore would lose."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from reversion.models import Revision

from backups.models import Backup, BackupStatus, Restore
from backups.storage import backup_storage, latest_verifications, storage_listing
from core.errors import BadRequest, NotFound
from core.pages import decode_cursor, encode_cursor

USABLE = (BackupStatus.AVAILABLE, BackupStatus.VERIFIED)


def backup_get(*, backup_id: str) -> Backup:
    backup = Backup.objects.filter(pk=backup_id).first()
    if backup is None:
        raise NotFound(f"There is no backup {backup_id!r} in the catalog.", code="backup_not_found")
    return backup


def backups_page(*, limit: int, cursor: str | None) -> tuple[list[Backup], str | None]:
    """One page of the catalog, newest first, and the cursor of the next page. One query."""
    backups: QuerySet[Backup] = Backup.objects.order_by("-created_at", "-id")
    if cursor:
        created_at, backup_id = decode_cursor(cursor, 2)
        moment = parse_datetime(created_at) if isinstance(created_at, str) else None
        if moment is None:
            raise BadRequest("The cursor is not valid.", code="invalid_cursor")
        backups = backups.filter(Q(created_at__lt=moment) | Q(created_at=moment, id__lt=backup_id))
    page = list(backups[: limit + 1])
    next_cursor = None
    if len(page) > limit:
        last = page[limit - 1]
        next_cursor = encode_cursor([last.created_at.isoformat(), last.id])
    return page[:limit], next_cursor


def backup_latest(*, engine: str, usable_only: bool = True) -> Backup | None:
    """The newest backup of an engine (by default one whose dump is there and not known to be bad)."""
    backups = Backup.objects.filter(engine=engine)
    if usable_only:
        backups = backups.filter(status__in=USABLE)
    return backups.order_by("-created_at", "-id").first()


@dataclass(frozen=True)
class Freshness:
    newest: Backup | None
    max_age: timedelta

    @property
    def age(self) -> timedelta | None:
        return timezone.now() - self.newest.created_at if self.newest else None

    @property
    def stale(self) -> bool:
        return self.newest is None or self.age > self.max_age


def backup_freshness(*, alias: str = DEFAULT_DB_ALIAS) -> Freshness:
    """The newest usable backup of the running engine, and whether it is older than the configured age."""
    return Freshness(
        newest=backup_latest(engine=connections[alias].vendor),
        max_age=timedelta(hours=settings.NUCLEUS_BACKUP_MAX_AGE_HOURS),
    )


def live_row_counts(*, alias: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Rows per table of the live database, exactly (one query; reads every table)."""
    connection = connections[alias]
    tables = sorted(connection.introspection.table_names())
    if not tables:
        return {}
    quote = connection.ops.quote_name
    union = " UNION ALL ".join(f"SELECT %s, count(*) FROM {quote(table)}" for table in tables)  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(union, tables)
        return dict(sorted(cursor.fetchall()))


@dataclass(frozen=True)
class RestoreLoss:
    """What restoring a backup would take away, for the confirmation page."""

    since: datetime
    revisions_since: int
    last_change: datetime | None
    tables: list[tuple[str, int | None, int | None]]  # (table, rows now, rows in the backup) that differ
    newer_backups: int


def restore_loss(*, backup: Backup) -> RestoreLoss:
    """Compare the live database with a backup: changed tables, history written since, newer backups."""
    live = live_row_counts()
    changed = [
        (table, live.get(table), backup.row_counts.get(table))
        for table in sorted(set(live) | set(backup.row_counts))
        if live.get(table) != backup.row_counts.get(table) and not table.startswith("backups_")
    ]
    revisions = Revision.objects.filter(date_created__gt=backup.created_at)
    return RestoreLoss(
        since=backup.created_at,
        revisions_since=revisions.count(),
        last_change=revisions.order_by("-date_created").values_list("date_created", flat=True).first(),
        tables=changed,
        newer_backups=Backup.objects.filter(created_at__gt=backup.created_at, engine=backup.engine).count(),
    )


def restores_recent(*, limit: int = 20) -> list[Restore]:
    return list(Restore.objects.order_by("-started_at")[:limit])


def backup_statuses() -> dict[str, str]:
    """Status of every backup in the catalog, by id."""
    return dict(Backup.objects.values_list("id", "status"))


def manifest_latest(*, engine: str, servername: str | None = None) -> dict | None:
    """The manifest of the newest usable dump of an engine, read from backup storage (not the catalog):
    its dump is there and its last verification, if any, passed."""
    storage = backup_storage()
    listing = storage_listing(storage)
    verifications = latest_verifications(storage)
    candidates = [
        manifest
        for manifest in listing.manifests
        if manifest["vendor"] == engine
        and manifest["file"] in listing.dumps
        and (not servername or servername in manifest["file"])
        and verifications.get(manifest["id"], {}).get("ok", True)
    ]
    return max(candidates, key=lambda manifest: (manifest["created_at"], manifest["id"]), default=None)
