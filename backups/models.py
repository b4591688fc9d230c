"""The backup catalog: an index of the manifests in backup storage, and the record of every restore.

Both tables are mirrors of files in backup storage (manifests and journal entries) and are rebuilt
from them after every restore, so that a restore never makes the catalog forget a backup.
"""

from django.db import models
from django.db.models import Q


class BackupStatus(models.TextChoices):
    AVAILABLE = "available", "available (not verified yet)"
    VERIFIED = "verified", "verified"
    FAILED = "failed", "failed verification"
    MISSING = "missing", "dump missing from storage"


class BackupKind(models.TextChoices):
    MANUAL = "manual", "manual (API or admin)"
    COMMAND = "command", "manage.py dbbackup"
    SAFETY = "safety", "safety backup before a restore"


class Backup(models.Model):
    """A dump in backup storage, as its manifest describes it, and what its last verification found."""

    id = models.CharField(primary_key=True, max_length=40)
    status = models.CharField(max_length=10, choices=BackupStatus.choices, default=BackupStatus.AVAILABLE)
    kind = models.CharField(max_length=10, choices=BackupKind.choices, default=BackupKind.MANUAL)
    file = models.CharField(max_length=255, unique=True, help_text="The dump's name in backup storage.")
    size = models.BigIntegerField(help_text="Bytes, as stored.")
    sha256 = models.CharField(max_length=64, help_text="Of the dump as stored.")
    engine = models.CharField(max_length=20, help_text="postgresql or sqlite: dumps never cross engines.")
    database = models.CharField(max_length=255, help_text="The name of the database that was dumped.")
    compressed = models.BooleanField(default=False)
    migrations = models.JSONField(default=list, help_text="Applied migrations, as app.name.")
    row_counts = models.JSONField(default=dict, help_text="Rows per table in the dump, exactly.")
    created_at = models.DateTimeField(db_index=True)
    duration_ms = models.PositiveIntegerField()
    created_by = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    nucleus_version = models.CharField(max_length=100, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verify_ok = models.BooleanField(null=True, blank=True)
    verify_checks = models.JSONField(default=list, blank=True)
    verify_duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("verify_backup", "Can verify a backup"),
            ("restore_backup", "Can restore the database from a backup"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=BackupStatus.values),
                name="backup_status_valid",
                violation_error_message="status must be available, verified, failed or missing.",
            ),
            models.CheckConstraint(
                condition=Q(size__gte=0),
                name="backup_size_not_negative",
                violation_error_message="size cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return self.id


class RestoreOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "succeeded"
    REFUSED = "refused", "refused (database untouched)"
    FAILED = "failed", "failed"


class Restore(models.Model):
    """One attempt to restore a backup: who, when, which backup, the safety backup, how long, outcome."""

    id = models.CharField(primary_key=True, max_length=40)
    source_backup = models.CharField(max_length=40, help_text="The id of the backup restored.")
    source_file = models.CharField(max_length=255, blank=True)
    safety_backup = models.CharField(max_length=40, blank=True, help_text="Taken just before; empty if none.")
    requested_by = models.CharField(max_length=200)
    via = models.CharField(max_length=20, help_text="api, admin or command.")
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=RestoreOutcome.choices)
    detail = models.TextField(blank=True)
    pending_migrations = models.JSONField(
        default=list, blank=True, help_text="Migrations the restored database lacks: run manage.py migrate."
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=RestoreOutcome.values),
                name="restore_outcome_valid",
                violation_error_message="outcome must be succeeded, refused or failed.",
            ),
        ]

    def __str__(self) -> str:
        return f"restore of {self.source_backup} at {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"
