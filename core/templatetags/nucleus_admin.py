"""{% nucleus_control_room user as room %}: the admin index's view of the service's state."""

from dataclasses import dataclass, field
from datetime import timedelta

from django import template
from django.db import connection

from core import status
from core.models import CollectionKind
from core.status import BackupState, CollectionState

register = template.Library()

# The index lists at most this many collections of each kind; the changelists have the rest.
SHOWN = 50

# Each panel of the control room and the view permission that shows it (superusers hold them all).
# Migrations and the database's size go with backups: the backup catalog already shows each backup's
# applied migrations, per-table row counts and size.
PANEL_PERMISSIONS = {
    "services": "core.view_service",
    "tokens": "core.view_servicetoken",
    "collections": "core.view_collection",
    "consumers": "core.view_consumerposition",
    "schemas": "schemas.view_schema",
    "backups": "backups.view_backup",
    # Not panels: whether collection and stream names open their records and events.
    "records": "core.view_record",
    "events": "core.view_event",
}


@dataclass(frozen=True)
class ControlRoom:
    """What the user may see, and the figures of those panels only (None for the others)."""

    may: dict[str, bool]
    engine: str = ""
    services: int | None = None
    active_services: int | None = None
    usable_tokens: int | None = None
    record_collections: list[CollectionState] = field(default_factory=list)
    streams: list[CollectionState] = field(default_factory=list)
    schemas: int | None = None
    pending_migrations: list[str] = field(default_factory=list)
    database_bytes: int | None = None
    backups: BackupState | None = None

    @property
    def empty(self) -> bool:
        panels = ("services", "tokens", "collections", "schemas", "backups")
        return not any(self.may[panel] for panel in panels)

    @property
    def records(self) -> int:
        return sum(c.records for c in self.record_collections)

    @property
    def data_bytes(self) -> int:
        return sum(c.data_bytes or 0 for c in self.record_collections)

    @property
    def shown_record_collections(self) -> list[CollectionState]:
        return self.record_collections[:SHOWN]

    @property
    def shown_streams(self) -> list[CollectionState]:
        return self.streams[:SHOWN]


@register.simple_tag
def nucleus_control_room(user) -> ControlRoom:
    """The panels `user` may view, with data sizes: a few aggregate queries, one of which reads every record.

    Nothing is computed for a panel the user may not view.
    """
    may = {panel: user.has_perm(perm) for panel, perm in PANEL_PERMISSIONS.items()}
    figures = {}
    if may["services"]:
        figures["services"], figures["active_services"] = status.service_counts()
    if may["tokens"]:
        figures["usable_tokens"] = status.usable_tokens()
    if may["collections"]:
        collections = status.collection_states(sizes=True, consumers=may["consumers"])
        figures["record_collections"] = [c for c in collections if c.kind == CollectionKind.RECORDS]
        figures["streams"] = [c for c in collections if c.kind == CollectionKind.STREAM]
    if may["schemas"]:
        figures["schemas"] = status.schema_count()
    if may["backups"]:
        figures["pending_migrations"] = status.pending_migrations()
        figures["database_bytes"] = status.database_bytes()
        figures["backups"] = status.backup_state()
    return ControlRoom(may=may, engine=connection.vendor, **figures)


@register.filter
def minutes(duration: timedelta) -> str:
    """A duration in whole minutes, for people: "15 minutes", "1 minute"."""
    count = max(round(duration.total_seconds() / 60), 1)
    return f"{count} minute{'s' if count != 1 else ''}"
