"""The state of the service at a glance: what the admin index shows and what /metrics exports.

Every figure here is computed with a handful of aggregate queries, never by loading rows, so it
stays cheap enough for a dashboard and a Prometheus scrape on a collection of millions of records.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F, Func, IntegerField, Max, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.models import Collection, CollectionKind, ConsumerPosition, Record, Service, ServiceToken


@dataclass(frozen=True)
class CollectionState:
    name: str
    kind: str
    owner: str
    records: int
    data_bytes: int | None
    last_offset: int
    consumers: int
    max_lag: int
    id: int | None = None


@dataclass(frozen=True)
class BackupState:
    newest_at: datetime | None
    newest_verified_at: datetime | None
    max_age_hours: int

    def seconds_since(self, moment: datetime | None) -> float | None:
        return (timezone.now() - moment).total_seconds() if moment else None

    @property
    def verified_stale(self) -> bool:
        """No verified backup, or the newest one is older than NUCLEUS_BACKUP_MAX_AGE_HOURS."""
        age = self.seconds_since(self.newest_verified_at)
        return age is None or age > self.max_age_hours * 3600


@dataclass(frozen=True)
class ServiceState:
    services: int
    active_services: int
    active_tokens: int
    collections: list[CollectionState] = field(default_factory=list)
    schemas: int = 0
    pending_migrations: list[str] = field(default_factory=list)
    database_bytes: int | None = None
    backups: BackupState | None = None

    @property
    def streams(self) -> list[CollectionState]:
        return [c for c in self.collections if c.kind == CollectionKind.STREAM]


def pending_migrations(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Migrations the code has and the database has not applied, as app.name."""
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def collection_states(*, sizes: bool = False, consumers: bool = True) -> list[CollectionState]:
    """Every collection with its record count, stream head and largest consumer lag: three queries.

    ``sizes`` adds the bytes of record data per collection, which reads every row: admin only.
    Without ``consumers`` streams show no consumers (and one query fewer).
    """
    counts = Record.objects.values("collection_id").annotate(n=Count("id"))
    if sizes:
        counts = counts.annotate(size=Coalesce(Sum(_data_size()), 0))
    per_collection = {row["collection_id"]: row for row in counts.order_by()}
    positions = ConsumerPosition.objects.all() if consumers else ConsumerPosition.objects.none()
    per_stream = {
        row["stream_id"]: row
        for row in positions.values("stream_id")
        .annotate(n=Count("id"), max_lag=Max(F("stream__last_offset") - F("offset")))
        .order_by()
    }
    states = []
    for collection in Collection.objects.select_related("owner").order_by("name"):
        counted = per_collection.get(collection.pk, {})
        consumed = per_stream.get(collection.pk, {})
        states.append(
            CollectionState(
                name=collection.name,
                kind=collection.kind,
                owner=collection.owner.name,
                records=counted.get("n", 0),
                data_bytes=counted.get("size", 0) if sizes else None,
                last_offset=collection.last_offset,
                consumers=consumed.get("n", 0),
                max_lag=max(consumed.get("max_lag") or 0, 0),
                id=collection.pk,
            )
        )
    return states


@dataclass(frozen=True)
class ConsumerState:
    stream: str
    service: str  # the service that keeps the consumer: names are per service
    consumer: str
    offset: int
    lag: int


def consumer_states() -> list[ConsumerState]:
    """Every service's consumer positions with their lag behind the stream's last offset: one query."""
    rows = ConsumerPosition.objects.order_by("stream__name", "owner__name", "consumer").values_list(
        "stream__name", "owner__name", "consumer", "offset", "stream__last_offset"
    )
    return [
        ConsumerState(
            stream=stream, service=service, consumer=consumer, offset=offset, lag=max(last_offset - offset, 0)
        )
        for stream, service, consumer, offset, last_offset in rows
    ]


def _data_size() -> Func:
    if connection.vendor == "postgresql":
        return Func(F("data"), function="pg_column_size", output_field=IntegerField())
    return Func(F("data"), function="length", output_field=IntegerField())


def database_bytes() -> int | None:
    """The size of the database on disk, or None when it cannot be told."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            return cursor.fetchone()[0]
    return None


def backup_state() -> BackupState:
    # backups depends on core, not the other way round: imported when asked.
    from backups.models import Backup, BackupStatus
    from backups.selectors import backup_freshness

    freshness = backup_freshness()
    verified = (
        Backup.objects.filter(status=BackupStatus.VERIFIED, verify_ok=True, engine=connection.vendor)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return BackupState(
        newest_at=freshness.newest.created_at if freshness.newest else None,
        newest_verified_at=verified,
        max_age_hours=int(freshness.max_age.total_seconds() // 3600),
    )


def service_counts() -> tuple[int, int]:
    """How many services there are, and how many of them are active: one query."""
    services = Service.objects.aggregate(all=Count("id"), active=Count("id", filter=Q(is_active=True)))
    return services["all"], services["active"]


def usable_tokens() -> int:
    """Tokens not revoked, of active services (expiry aside): one query."""
    return ServiceToken.objects.filter(revoked_at__isnull=True, service__is_active=True).count()


def schema_count() -> int:
    from schemas.models import Schema  # schemas depends on core, not the other way round

    return Schema.objects.count()


def service_state(*, sizes: bool = False) -> ServiceState:
    services, active_services = service_counts()
    return ServiceState(
        services=services,
        active_services=active_services,
        active_tokens=usable_tokens(),
        collections=collection_states(sizes=sizes),
        schemas=schema_count(),
        pending_migrations=pending_migrations(),
        database_bytes=database_bytes(),
        backups=backup_state(),
    )
