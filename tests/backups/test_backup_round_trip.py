"""The round trip: back up, change and delete data, restore; every table is as it was at backup time.

Runs on the database of the suite: PostgreSQL with DATABASE_URL=postgres://..., else SQLite.
"""

import pytest
from django.db import connection

from backups.models import Backup, BackupKind, BackupStatus, Restore, RestoreOutcome
from backups.storage import MANIFEST_SUFFIX
from tests.backups.support import (
    backup_path,
    backups_url,
    change_everything,
    content_checksum,
    populate,
    read_manifest,
    restore_url,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_restore_brings_back_every_table_exactly(operator, owner):
    populate(owner.service)
    before = content_checksum()

    created = operator.post(backups_url(), {"note": "before the change"}, format="json")

    assert created.status_code == 201, created.content
    backup = created.json()
    assert set(backup) >= {
        "id", "status", "file", "size", "sha256", "engine", "migrations", "row_counts",
        "created_at", "duration_ms", "created_by", "verified_at",
    }  # fmt: skip
    assert backup["engine"] == connection.vendor
    assert backup["status"] == "available" and backup["verified_at"] is None
    assert backup["created_by"] == "operator:alice" and backup["note"] == "before the change"
    assert created["Location"].endswith(f"/api/v1/backups/{backup['id']}/")
    assert backup_path(backup["file"]).stat().st_size == backup["size"]
    assert read_manifest(backup["file"])["sha256"] == backup["sha256"]
    assert backup["row_counts"]["core_record"] == 30
    assert "core.0001_initial" in backup["migrations"]

    change_everything(owner.service)
    assert content_checksum() != before
    newer = operator.post(backups_url(), {"note": "after the change"}, format="json").json()

    restored = operator.post(restore_url(backup["id"]), {"confirm": backup["id"]}, format="json")

    assert restored.status_code == 200, restored.content
    body = restored.json()
    assert body["outcome"] == "succeeded" and body["backup"] == backup["id"]
    assert body["requested_by"] == "operator:alice" and body["via"] == "api"
    assert body["pending_migrations"] == []
    assert content_checksum() == before
    # The catalog was rebuilt from storage: the newer backup and the safety backup are still listed.
    listed = {item.id: item for item in Backup.objects.all()}
    assert {backup["id"], newer["id"], body["safety_backup"]} <= set(listed)
    assert listed[body["safety_backup"]].kind == BackupKind.SAFETY
    assert listed[body["safety_backup"]].created_at > listed[newer["id"]].created_at
    assert Restore.objects.get(pk=body["id"]).outcome == RestoreOutcome.SUCCEEDED
    assert Restore.objects.get(pk=body["id"]).safety_backup == body["safety_backup"]


def test_the_safety_backup_undoes_a_restore(operator, owner):
    populate(owner.service, records=5)
    old = operator.post(backups_url(), {}, format="json").json()
    change_everything(owner.service)
    changed = content_checksum()
    safety = operator.post(restore_url(old["id"]), {"confirm": old["id"]}, format="json").json()[
        "safety_backup"
    ]

    undone = operator.post(restore_url(safety), {"confirm": safety}, format="json")

    assert undone.status_code == 200, undone.content
    assert content_checksum() == changed
    assert Restore.objects.filter(outcome=RestoreOutcome.SUCCEEDED).count() == 2


def test_a_compressed_backup_round_trips(operator, owner):
    populate(owner.service, records=5)
    before = content_checksum()
    backup = operator.post(backups_url(), {"compress": True}, format="json").json()
    change_everything(owner.service)

    response = operator.post(restore_url(backup["id"]), {"confirm": backup["id"]}, format="json")

    assert response.status_code == 200, response.content
    assert backup["file"].endswith(".gz") and backup["compressed"] is True
    assert content_checksum() == before


@pytest.mark.slow
def test_the_catalog_can_be_rebuilt_from_storage_at_any_time(operator, owner):
    from backups.services import catalog_rebuild

    populate(owner.service, records=3)
    first = operator.post(backups_url(), {}, format="json").json()
    second = operator.post(backups_url(), {}, format="json").json()
    operator.post(f"{backups_url()}{first['id']}/verify/", format="json")
    stray = backup_path("nucleus-sqlite-2021-01-01-000000-000000.sqlite3")
    stray.write_bytes(b"a dump without a manifest")
    Backup.objects.all().delete()

    summary = catalog_rebuild()

    assert summary.backups == 2
    assert summary.dumps_without_manifest == [stray.name]
    rebuilt = {backup.id: backup for backup in Backup.objects.all()}
    assert set(rebuilt) == {first["id"], second["id"]}
    assert rebuilt[first["id"]].status == BackupStatus.VERIFIED  # verifications live in storage too
    assert rebuilt[second["id"]].sha256 == second["sha256"]
    backup_path(second["file"]).unlink()
    catalog_rebuild()
    assert Backup.objects.get(pk=second["id"]).status == BackupStatus.MISSING
    assert backup_path(second["file"] + MANIFEST_SUFFIX).exists()


def test_tables_newer_than_the_backup_are_dropped_too(operator, owner):
    """A table from a migration newer than the backup, referencing a restored table, must not survive
    (pg_restore --clean alone would fail on its foreign key, or leave it behind)."""
    populate(owner.service, records=3)
    before = content_checksum()
    backup = operator.post(backups_url(), {}, format="json").json()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE core_from_the_future (id integer PRIMARY KEY, "
            "collection_id bigint REFERENCES core_collection (id))"
        )
        cursor.execute("INSERT INTO core_from_the_future SELECT 1, min(id) FROM core_collection")

    response = operator.post(restore_url(backup["id"]), {"confirm": backup["id"]}, format="json")

    assert response.status_code == 200, response.content
    assert "core_from_the_future" not in connection.introspection.table_names()
    assert content_checksum() == before
