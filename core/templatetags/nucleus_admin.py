"""{% nucleus_control_room as room %}: the admin index's view of the service's state."""

from dataclasses import dataclass

from django import template
from django.db import connection

from core.models import CollectionKind
from core.status import CollectionState, ServiceState, service_state

register = template.Library()

# The index lists at most this many collections of each kind; the changelists have the rest.
SHOWN = 50


@dataclass(frozen=True)
class ControlRoom:
    state: ServiceState
    engine: str
    record_collections: list[CollectionState]
    streams: list[CollectionState]
    records: int
    data_bytes: int

    @property
    def shown_record_collections(self) -> list[CollectionState]:
        return self.record_collections[:SHOWN]

    @property
    def shown_streams(self) -> list[CollectionState]:
        return self.streams[:SHOWN]


@register.simple_tag
def nucleus_control_room() -> ControlRoom:
    """The state of the service, with data sizes: a few aggregate queries, one of which reads every record."""
    state = service_state(sizes=True)
    record_collections = [c for c in state.collections if c.kind == CollectionKind.RECORDS]
    return ControlRoom(
        state=state,
        engine=connection.vendor,
        record_collections=record_collections,
        streams=state.streams,
        records=sum(c.records for c in record_collections),
        data_bytes=sum(c.data_bytes or 0 for c in record_collections),
    )
