"""Request validation and response shapes of the schema registry API."""

from rest_framework import serializers

from core.api.serializers import StrictSerializer
from schemas.models import Compatibility, Schema, SchemaVersion


class SchemaCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, trim_whitespace=False)
    compatibility = serializers.ChoiceField(choices=Compatibility.choices, default=Compatibility.BACKWARD)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    owner = serializers.CharField(
        required=False, help_text="Operators only: the owning service (required for them)."
    )


class SchemaUpdateSerializer(StrictSerializer):
    compatibility = serializers.ChoiceField(choices=Compatibility.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class SchemaSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.name")
    latest_version = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = Schema
        fields = [
            "name",
            "compatibility",
            "owner",
            "description",
            "latest_version",
            "created_at",
            "updated_at",
        ]


class SchemaPageSerializer(serializers.Serializer):
    results = SchemaSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class DefinitionField(serializers.JSONField):
    """JSONField whose serializability check answers a 422, not a 500, for very deep nesting."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except RecursionError:
            raise serializers.ValidationError("is nested too deeply.") from None


class DefinitionSerializer(StrictSerializer):
    definition = DefinitionField(help_text="A JSON Schema (draft 2020-12, or draft-07 via $schema).")


class SchemaVersionSerializer(serializers.ModelSerializer):
    schema = serializers.CharField(source="schema.name")

    class Meta:
        model = SchemaVersion
        fields = ["schema", "version", "definition", "fingerprint", "created_at", "created_by"]


class SchemaVersionPageSerializer(serializers.Serializer):
    results = SchemaVersionSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class CompatibilityErrorSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="JSON Pointer into the proposed definition.")
    message = serializers.CharField()


class CompatibilityReportSerializer(serializers.Serializer):
    compatible = serializers.BooleanField()
    errors = CompatibilityErrorSerializer(many=True)
    invalid_records = serializers.DictField(child=serializers.IntegerField(), help_text="collection → count")


class AppMigrationsSerializer(serializers.Serializer):
    app = serializers.CharField()
    applied = serializers.ListField(child=serializers.CharField())
    pending = serializers.ListField(child=serializers.CharField())


class MigrationStatusSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    apps = AppMigrationsSerializer(many=True)
