"""Request validation and response shapes of the backups API (also what the OpenAPI document shows)."""

from rest_framework import serializers

from backups.models import Backup, Restore
from core.api.serializers import StrictSerializer


class BackupCreateSerializer(StrictSerializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)
    compress = serializers.BooleanField(
        required=False, default=False, help_text="gzip the dump (PostgreSQL dumps are compressed already)."
    )


class BackupSerializer(serializers.ModelSerializer):
    # A plain string in the OpenAPI document: an enum named "Kind" would collide with collections' kind.
    kind = serializers.CharField(help_text="manual (API or admin), command (manage.py dbbackup) or safety.")
    engine = serializers.CharField(help_text="postgresql or sqlite: a dump is restored only into its engine.")
    migrations = serializers.ListField(child=serializers.CharField(), help_text="Applied, as app.name.")
    row_counts = serializers.DictField(child=serializers.IntegerField(), help_text="table → rows, exactly.")

    class Meta:
        model = Backup
        fields = [
            "id",
            "status",
            "kind",
            "file",
            "size",
            "sha256",
            "engine",
            "database",
            "compressed",
            "migrations",
            "row_counts",
            "created_at",
            "duration_ms",
            "created_by",
            "note",
            "nucleus_version",
            "verified_at",
            "verify_ok",
        ]


class BackupPageSerializer(serializers.Serializer):
    results = BackupSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class VerifyCheckSerializer(serializers.Serializer):
    name = serializers.ChoiceField(
        choices=["manifest", "signature", "checksum", "restore", "row_counts", "migrations"]
    )
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class VerifyResultSerializer(serializers.Serializer):
    backup = serializers.CharField()
    ok = serializers.BooleanField(help_text="Every check passed.")
    checks = VerifyCheckSerializer(many=True)
    verified_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    verified_by = serializers.CharField()


class RestoreRequestSerializer(StrictSerializer):
    confirm = serializers.CharField(
        help_text="The id of the backup, typed again: a restore replaces everything."
    )


class RestoreSerializer(serializers.ModelSerializer):
    backup = serializers.CharField(source="source_backup")
    file = serializers.CharField(source="source_file")
    safety_backup = serializers.CharField(
        allow_blank=True, help_text="The id of the backup taken just before."
    )
    pending_migrations = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Restore
        fields = [
            "id",
            "backup",
            "file",
            "safety_backup",
            "requested_by",
            "via",
            "started_at",
            "finished_at",
            "duration_ms",
            "outcome",
            "detail",
            "pending_migrations",
        ]
