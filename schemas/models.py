"""The schema registry: named schemas with immutable, numbered versions."""

from django.db import models
from django.db.models import Q

from core.models import TimestampedModel, name_validator


class Compatibility(models.TextChoices):
    NONE = "NONE", "none"
    BACKWARD = "BACKWARD", "backward"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE", "backward, transitive"
    FORWARD = "FORWARD", "forward"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE", "forward, transitive"
    FULL = "FULL", "full"
    FULL_TRANSITIVE = "FULL_TRANSITIVE", "full, transitive"


class Schema(TimestampedModel):
    """A named JSON Schema that evolves through versions under a compatibility mode."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    compatibility = models.CharField(
        max_length=20, choices=Compatibility.choices, default=Compatibility.BACKWARD
    )
    owner = models.ForeignKey("core.Service", on_delete=models.PROTECT, related_name="schemas")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(compatibility__in=Compatibility.values),
                name="schema_compatibility_valid",
                violation_error_message="compatibility must be one of the seven modes.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SchemaVersion(models.Model):
    """One immutable version of a schema's definition."""

    schema = models.ForeignKey(Schema, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.JSONField()
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of the definition.")
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)

    class Meta:
        ordering = ["schema", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["schema", "version"],
                name="schema_version_unique",
                violation_error_message="This schema already has this version.",
            ),
            models.UniqueConstraint(
                fields=["schema", "fingerprint"],
                name="schema_version_fingerprint_unique",
                violation_error_message="This definition is already a version of this schema.",
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1),
                name="schema_version_positive",
                violation_error_message="Versions start at 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schema.name} v{self.version}"
