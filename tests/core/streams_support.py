"""Helpers of the stream tests: URLs by route name, set-up through services, and the stored state."""

import uuid
from urllib.parse import urlencode

from django.urls import reverse

from core import services
from core.models import Collection, CollectionKind, ConsumerPosition, Event, Service
from tests.actors import TEST_ACTOR


def events_url(stream: str = "events") -> str:
    return reverse("event-list", args=[stream])


def consumer_url(consumer: str, stream: str = "events", service: str | None = None) -> str:
    """The consumer's URL; with service, the consumer of that service (for the stream's owner, operators)."""
    url = reverse("consumer-detail", args=[stream, consumer])
    return url if service is None else f"{url}?{urlencode({'service': service})}"


def consumers_url(stream: str = "events") -> str:
    return reverse("consumer-list", args=[stream])


def make_stream(
    owner: Service, name: str = "events", *, readers: tuple = (), writers: tuple = ()
) -> Collection:
    """A stream collection of owner, with read grants to readers and write grants to writers (names)."""
    stream = services.collection_create(actor=TEST_ACTOR, name=name, owner=owner, kind=CollectionKind.STREAM)
    for service_name in readers:
        services.grant_set(actor=TEST_ACTOR, collection=stream, service_name=service_name, access="read")
    for service_name in writers:
        services.grant_set(actor=TEST_ACTOR, collection=stream, service_name=service_name, access="write")
    return stream


def event(event_type: str = "thing.happened", data: dict | None = None, event_id=None) -> dict:
    """An event as a producer sends it; with a fresh id unless event_id is given (None: no id at all)."""
    body = {"type": event_type, "data": {} if data is None else data}
    if event_id is not False:
        body["id"] = str(event_id or uuid.uuid4())
    return body


def append(stream: Collection, count: int, event_type: str = "seeded") -> list[tuple[str, int]]:
    """Append count events through the service; returns their (id, offset)."""
    events = [event(event_type, {"n": n}) for n in range(count)]
    return services.stream_append(stream=stream, events=events, actor=TEST_ACTOR).events


def keep_position(stream: Collection, consumer: str, offset: int, keeper: str | None = None) -> None:
    """Store the position of keeper's consumer (by default the stream owner's) through the service."""
    owner = Service.objects.get(name=keeper) if keeper else None
    services.consumer_position_set(
        stream=stream, owner=owner, consumer=consumer, offset=offset, actor=TEST_ACTOR
    )


def stored_events(stream: Collection) -> list[tuple]:
    """(offset, id, type, data, producer) of every stored event of stream, by offset."""
    rows = Event.objects.filter(stream=stream).order_by("offset")
    return [
        (offset, str(event_id), event_type, data, producer)
        for offset, event_id, event_type, data, producer in rows.values_list(
            "offset", "event_id", "type", "data", "producer"
        )
    ]


def last_offset(stream: Collection) -> int:
    return Collection.objects.values_list("last_offset", flat=True).get(pk=stream.pk)


def stream_state(stream: Collection) -> dict:
    """Everything a request to a stream could change: events, last offset, every service's consumers."""
    return {
        "events": stored_events(stream),
        "last_offset": last_offset(stream),
        "consumers": list(
            ConsumerPosition.objects.filter(stream=stream)
            .order_by("owner__name", "consumer")
            .values_list("owner__name", "consumer", "offset", "updated_at", "updated_by")
        ),
    }
