"""Principals, collections, grants, records and the bookkeeping that makes writes safe to retry."""

import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from reversion.models import Revision

NAME_PATTERN = r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$"
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


def _whole(pattern: str) -> str:
    """The pattern anchored at the very end: a bare `$` would also accept a trailing newline."""
    return pattern[:-1] + r"\Z"


name_validator = RegexValidator(
    _whole(NAME_PATTERN),
    "Use lower-case letters, digits, '_' and '-', in dot-separated parts starting with a letter.",
)
key_validator = RegexValidator(
    _whole(KEY_PATTERN),
    "Use 1 to 200 characters: letters, digits, '.', '_', ':' and '-', starting with a letter or digit.",
)
service_name_validator = RegexValidator(
    _whole(SERVICE_NAME_PATTERN),
    "Use lower-case letters, digits, '_' and '-', starting with a letter (at most 63).",
)


class TimestampedModel(models.Model):
    """Adds created_at and updated_at, maintained by the database layer on save."""

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Service(TimestampedModel):
    """A client service that calls the API with bearer tokens."""

    name = models.CharField(max_length=63, unique=True, validators=[service_name_validator])
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive services get 401 for every token.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ServiceToken(models.Model):
    """A bearer token of a service: only its SHA-256 is stored; the token is shown once."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="tokens")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["service__name", "-created_at"]

    def __str__(self) -> str:
        return f"{self.service.name}: {self.prefix}…"


class CollectionKind(models.TextChoices):
    RECORDS = "records", "records"
    STREAM = "stream", "stream"


class Collection(TimestampedModel):
    """A named set of records or events, owned by the service that created it."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    kind = models.CharField(max_length=10, choices=CollectionKind.choices, default=CollectionKind.RECORDS)
    owner = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="collections")
    description = models.TextField(blank=True)
    require_if_match = models.BooleanField(
        default=False, help_text="Refuse (428) updates and deletes of existing records without If-Match."
    )
    schema = models.ForeignKey(
        "schemas.Schema",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="collections",
        help_text="Writes are validated against a version of this schema: the pinned one, else the latest.",
    )
    # A collection bound to a schema of another service is always pinned (its owner moves the pin), so
    # that the schema's owner can neither learn about its records nor block its writes.
    schema_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The pinned version of the schema; empty: follow the latest (only the schema's owner).",
    )
    change_stream = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="change_sources",
        help_text="Records collections only: a stream of the same owner that gets an event for every write.",
    )
    # Streams only: the offset of the newest event. Appenders lock this row, so offsets are gapless
    # and increase in commit order; it never goes back, not even when old events are truncated.
    last_offset = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=CollectionKind.values),
                name="collection_kind_valid",
                violation_error_message="kind must be records or stream.",
            ),
            models.CheckConstraint(
                condition=Q(last_offset__gte=0),
                name="collection_last_offset_not_negative",
                violation_error_message="last_offset cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(schema_version__isnull=True) | Q(schema__isnull=False, schema_version__gte=1),
                name="collection_schema_version_needs_schema",
                violation_error_message="Only a collection bound to a schema is pinned to a version of it.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Access(models.TextChoices):
    READ = "read", "read"
    WRITE = "write", "write"


class Grant(models.Model):
    """Another service's access to a collection; write implies read."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="grants")
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="grants")
    access = models.CharField(max_length=5, choices=Access.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["collection__name", "service__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "service"],
                name="grant_unique_per_service",
                violation_error_message="This service already has a grant on this collection.",
            ),
            models.CheckConstraint(
                condition=Q(access__in=Access.values),
                name="grant_access_valid",
                violation_error_message="access must be read or write.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.access} {self.collection}"


def record_pk(collection_id: int, key: str) -> uuid.UUID:
    """The primary key of a record: stable for (collection, key), so history survives delete and re-create."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"nucleus:{collection_id}:{key}")


class Record(models.Model):
    """A JSON document under a key in a records collection; every write bumps its version."""

    id = models.UUIDField(primary_key=True, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="records")
    key = models.CharField(max_length=200, validators=[key_validator])
    data = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    schema_version = models.PositiveIntegerField(null=True, blank=True)
    # Always false on a stored row; true only in the history entry that records a deletion.
    deleted = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)
    updated_by = models.CharField(max_length=200)

    class Meta:
        ordering = ["collection_id", "key"]  # by id: ordering by the relation would join collections
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "key"],
                name="record_key_unique_per_collection",
                violation_error_message="A record with this key already exists in this collection.",
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1),
                name="record_version_positive",
                violation_error_message="version starts at 1.",
            ),
        ]
        indexes = [
            models.Index(fields=["collection", "updated_at", "key"], name="record_updated_idx"),
        ]

    def __str__(self) -> str:
        # The collection's name when it is already loaded (the admin loads it); never a query for it.
        collection = self.collection.name if Record.collection.is_cached(self) else self.collection_id
        return f"{collection}/{self.key}"


class Event(models.Model):
    """An immutable event of a stream, at a gapless offset (1, 2, 3, …) in commit order."""

    id = models.BigAutoField(primary_key=True)
    stream = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="events")
    offset = models.BigIntegerField()
    event_id = models.UUIDField(help_text="The producer's id (or a generated one); unique per stream.")
    type = models.CharField(max_length=200)
    data = models.JSONField()
    producer = models.CharField(max_length=200)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["stream_id", "offset"]
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "offset"],
                name="event_offset_unique_per_stream",
                violation_error_message="This stream already has an event at this offset.",
            ),
            models.UniqueConstraint(
                fields=["stream", "event_id"],
                name="event_id_unique_per_stream",
                violation_error_message="This stream already has an event with this id.",
            ),
            models.CheckConstraint(
                condition=Q(offset__gte=1),
                name="event_offset_positive",
                violation_error_message="Offsets start at 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.offset} {self.type}"


class ConsumerPosition(models.Model):
    """How far a service's named consumer has processed a stream: the offset of its last processed event."""

    stream = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="consumers")
    # Consumer names are scoped per service: each service keeps its own `billing`, and none can
    # learn (or move) another's. A deleted service's positions go with it.
    owner = models.ForeignKey(
        Service,
        on_delete=models.CASCADE,
        related_name="consumer_positions",
        help_text="The service that keeps this consumer; only it (and operators) may move it.",
    )
    consumer = models.CharField(max_length=200, validators=[key_validator])
    offset = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=200)

    class Meta:
        ordering = ["stream_id", "owner_id", "consumer"]
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "owner", "consumer"],
                name="consumer_unique_per_service_and_stream",
                violation_error_message="This service already has a consumer of this name in this stream.",
            ),
            models.CheckConstraint(
                condition=Q(offset__gte=0),
                name="consumer_offset_not_negative",
                violation_error_message="Offsets are 0 (nothing processed) or more.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} at {self.offset}"


class RecordTombstone(models.Model):
    """The last version of a deleted record key, so that a re-created key continues its version count."""

    id = models.UUIDField(primary_key=True, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="tombstones")
    key = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    deleted_at = models.DateTimeField()
    deleted_by = models.CharField(max_length=200)

    def __str__(self) -> str:
        return f"{self.collection_id}/{self.key} (deleted at version {self.version})"


class WriteMeta(models.Model):
    """Who made a revision of history and under which request id (django-reversion revision meta)."""

    revision = models.OneToOneField(Revision, on_delete=models.CASCADE, related_name="write_meta")
    actor = models.CharField(max_length=200)
    request_id = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.actor} ({self.request_id})"


class IdempotencyState(models.TextChoices):
    IN_PROGRESS = "in_progress", "in progress"
    COMPLETED = "completed", "completed"


class IdempotencyKey(models.Model):
    """The first response to a POST with an Idempotency-Key, replayed to retries of the same request."""

    scope = models.CharField(max_length=200, help_text="The caller: service or operator.")
    key = models.CharField(max_length=255)
    claim = models.UUIDField(
        unique=True, help_text="Which request holds the key; a taken-over claim is void."
    )
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=IdempotencyState.choices)
    response_status = models.PositiveSmallIntegerField(null=True)
    # JSON text, not jsonb: a problem body may echo "\u0000", which jsonb cannot hold.
    response_body = models.TextField(blank=True, default="")
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "key"],
                name="idempotency_key_unique_per_caller",
                violation_error_message="This idempotency key is already in use by this caller.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope}: {self.key}"


__all__ = [
    "Access",
    "Collection",
    "CollectionKind",
    "ConsumerPosition",
    "Event",
    "Grant",
    "IdempotencyKey",
    "IdempotencyState",
    "Record",
    "RecordTombstone",
    "Service",
    "ServiceToken",
    "WriteMeta",
    "record_pk",
]
