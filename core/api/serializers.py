"""Request validation and response shapes of the core API (also what the OpenAPI document shows)."""

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from core.models import Access, Collection, CollectionKind, Grant

MAX_VERSION = 2**31 - 1  # versions are 32-bit integers in the database: a larger one is a 422, not a 500


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so that a typo is an error instead of being ignored."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["must be a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["unknown field."] for name in unknown})
        return super().to_internal_value(data)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """Record and event data: documented as what it must be, a JSON object."""


class ProblemErrorSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="JSON Pointer into the request body.")
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable, machine-readable.")
    errors = ProblemErrorSerializer(many=True, required=False)


class CollectionCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, trim_whitespace=False)
    kind = serializers.ChoiceField(choices=CollectionKind.choices, default=CollectionKind.RECORDS)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    require_if_match = serializers.BooleanField(required=False, default=False)
    schema = serializers.CharField(
        required=False, allow_null=True, help_text="Name of a schema to validate every write against."
    )
    schema_version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_VERSION,
        help_text="Pin this version of the schema. Left out: another service's schema is pinned at its "
        "latest version, your own is followed (null: follow the latest; your own schemas only).",
    )
    change_stream = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Records collections: a stream of the same owner that gets an event for every write.",
    )
    owner = serializers.CharField(
        required=False, help_text="Operators only: the name of the owning service (required for them)."
    )


class CollectionUpdateSerializer(StrictSerializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    require_if_match = serializers.BooleanField(required=False)
    schema = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Bind a schema (stored records are checked first; 409 if any fails), or null to unbind.",
    )
    schema_version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_VERSION,
        help_text="Move the pin to this version of the schema (stored records are checked first; 409 if "
        "any fails), or null to follow the latest (your own schemas only).",
    )
    change_stream = serializers.CharField(
        required=False, allow_null=True, help_text="A stream of the same owner, or null for none."
    )


class CollectionSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.name")
    schema = serializers.CharField(source="schema.name", allow_null=True, default=None)
    schema_version = serializers.IntegerField(
        allow_null=True,
        read_only=True,
        help_text="The pinned version of the schema; null: writes follow its latest version (or no schema).",
    )
    change_stream = serializers.CharField(source="change_stream.name", allow_null=True, default=None)
    last_offset = serializers.IntegerField(
        read_only=True, help_text="Streams: the offset of the newest event."
    )

    class Meta:
        model = Collection
        fields = [
            "name",
            "kind",
            "owner",
            "schema",
            "schema_version",
            "change_stream",
            "last_offset",
            "description",
            "require_if_match",
            "created_at",
            "updated_at",
        ]


class GrantWriteSerializer(StrictSerializer):
    service = serializers.CharField(max_length=63, trim_whitespace=False)
    access = serializers.ChoiceField(choices=Access.choices)


class GrantSerializer(serializers.ModelSerializer):
    service = serializers.CharField(source="service.name")
    collection = serializers.CharField(source="collection.name")

    class Meta:
        model = Grant
        fields = ["collection", "service", "access", "created_at", "updated_at"]


class RecordCreateSerializer(StrictSerializer):
    key = serializers.CharField(required=False, help_text="Generated (a UUID) when absent.")
    data = JSONObjectField(help_text="A JSON object, at most 1 MiB serialized.")


class RecordDataSerializer(StrictSerializer):
    data = JSONObjectField(help_text="PUT: the new data. PATCH: a JSON merge patch (RFC 7386).")


class RecordSerializer(serializers.Serializer):
    """The record as the API returns it (rendered by core.api.views.record_body)."""

    collection = serializers.CharField()
    key = serializers.CharField()
    data = JSONObjectField()
    version = serializers.IntegerField()
    schema_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_by = serializers.CharField()


class RecordPageSerializer(serializers.Serializer):
    results = RecordSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class CollectionPageSerializer(serializers.Serializer):
    results = CollectionSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class GrantPageSerializer(serializers.Serializer):
    results = GrantSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class BulkItemSerializer(StrictSerializer):
    key = serializers.CharField(required=False)
    data = JSONObjectField()


class BulkRequestSerializer(serializers.Serializer):
    """Documented shape only: items are checked by the bulk service so errors name their index."""

    mode = serializers.ChoiceField(choices=["insert", "upsert"])
    records = serializers.ListField(
        child=BulkItemSerializer(), min_length=1, max_length=1000, help_text="1 to 1000 records."
    )


class BulkResultItemSerializer(serializers.Serializer):
    key = serializers.CharField()
    version = serializers.IntegerField()
    created = serializers.BooleanField()


class BulkResultSerializer(serializers.Serializer):
    results = BulkResultItemSerializer(many=True)


class HistoryEntrySerializer(serializers.Serializer):
    version = serializers.IntegerField()
    data = serializers.JSONField()
    deleted = serializers.BooleanField()
    changed_at = serializers.DateTimeField()
    changed_by = serializers.CharField()
    request_id = serializers.CharField()
    comment = serializers.CharField()


class HistoryPageSerializer(serializers.Serializer):
    results = HistoryEntrySerializer(many=True)
    next = serializers.URLField(allow_null=True)


class RevertSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)


class EventInSerializer(StrictSerializer):
    id = serializers.UUIDField(required=False, help_text="Deduplicates retries; generated when absent.")
    type = serializers.CharField(max_length=200)
    data = JSONObjectField()


class EventAppendSerializer(serializers.Serializer):
    """Documented shape only: events are checked by the append service so errors name their index."""

    events = serializers.ListField(
        child=EventInSerializer(), min_length=1, max_length=1000, help_text="1 to 1000 events."
    )
    expected_last_offset = serializers.IntegerField(required=False, min_value=0)


class AppendedEventSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    offset = serializers.IntegerField()
    duplicate = serializers.BooleanField(
        help_text="The id was already in the stream (or earlier in the request) with the same type and "
        "data: not appended again; offset is the original's."
    )


class AppendResultSerializer(serializers.Serializer):
    first_offset = serializers.IntegerField(
        allow_null=True,
        help_text="The offset of the first event appended; null when every event was a duplicate.",
    )
    last_offset = serializers.IntegerField(
        allow_null=True,
        help_text="The offset of the last event appended; null when every event was a duplicate.",
    )
    events = AppendedEventSerializer(many=True)


class EventSerializer(serializers.Serializer):
    offset = serializers.IntegerField()
    id = serializers.UUIDField()
    type = serializers.CharField()
    data = JSONObjectField()
    producer = serializers.CharField()
    created_at = serializers.DateTimeField()


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    last_offset = serializers.IntegerField()
    next_after = serializers.IntegerField()


class ConsumerPositionSerializer(serializers.Serializer):
    consumer = serializers.CharField()
    service = serializers.CharField(help_text="The service that keeps the consumer.")
    offset = serializers.IntegerField()
    last_offset = serializers.IntegerField()
    lag = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)


class ConsumerPageSerializer(serializers.Serializer):
    results = ConsumerPositionSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class ConsumerUpdateSerializer(StrictSerializer):
    offset = serializers.IntegerField(min_value=0)
    force = serializers.BooleanField(required=False, default=False)


class _TransactionOperation(serializers.Serializer):
    collection = serializers.CharField()


class _KeyedOperation(_TransactionOperation):
    key = serializers.CharField()
    if_match = serializers.CharField(required=False, help_text='A version, "*" or "\\"3\\"".')


class TransactionCreateSerializer(_TransactionOperation):
    op = serializers.ChoiceField(choices=["create"])
    key = serializers.CharField(required=False, help_text="Generated (a UUID) when absent.")
    data = JSONObjectField()


class TransactionPutSerializer(_KeyedOperation):
    op = serializers.ChoiceField(choices=["put"])
    data = JSONObjectField()


class TransactionPatchSerializer(_KeyedOperation):
    op = serializers.ChoiceField(choices=["patch"])
    data = JSONObjectField(help_text="A JSON merge patch (RFC 7386).")


class TransactionDeleteSerializer(_KeyedOperation):
    op = serializers.ChoiceField(choices=["delete"])


class TransactionAppendSerializer(_TransactionOperation):
    op = serializers.ChoiceField(choices=["append"])
    events = serializers.ListField(child=EventInSerializer(), min_length=1, max_length=1000)
    expected_last_offset = serializers.IntegerField(required=False, min_value=0)


class TransactionRequestSerializer(serializers.Serializer):
    """Documented shape only: operations are checked by the transaction service (errors name the index)."""

    operations = serializers.ListField(
        child=PolymorphicProxySerializer(
            component_name="TransactionOperation",
            serializers={
                "create": TransactionCreateSerializer,
                "put": TransactionPutSerializer,
                "patch": TransactionPatchSerializer,
                "delete": TransactionDeleteSerializer,
                "append": TransactionAppendSerializer,
            },
            resource_type_field_name="op",
        ),
        min_length=1,
        max_length=1000,
        help_text="1 to 1000 operations, applied in order; which fields each takes depends on op.",
    )


class TransactionResultItemSerializer(serializers.Serializer):
    op = serializers.CharField()
    collection = serializers.CharField()
    key = serializers.CharField(required=False)
    version = serializers.IntegerField(required=False)
    created = serializers.BooleanField(required=False)
    deleted = serializers.BooleanField(required=False)
    first_offset = serializers.IntegerField(required=False, allow_null=True)
    last_offset = serializers.IntegerField(required=False, allow_null=True)
    events = AppendedEventSerializer(many=True, required=False)


class TransactionResultSerializer(serializers.Serializer):
    results = TransactionResultItemSerializer(many=True)
