"""POST /backups/{id}/verify/ and manage.py verifybackup: checksum, test restore, row counts."""

import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from backups.models import Backup, BackupStatus
from tests.backups import support

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backed_up(operator, owner):
    support.populate(owner.service, records=5)
    return operator.post(support.backups_url(), {}, format="json").json()


def _scratch_databases() -> set[str]:
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'nucleus_verify_%%'")
        return {name for (name,) in cursor.fetchall()}


def _scratch_databases_left(before: set[str]) -> set[str]:
    """Scratch databases made since `before` that stay. Other test processes on the same server
    (pytest-xdist workers, the other suite) verify too, and drop theirs within seconds; a leak stays."""
    deadline = time.monotonic() + 60
    while (left := _scratch_databases() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def test_a_sound_backup_passes_every_check_and_the_result_is_recorded(operator, backed_up):
    scratch_before = _scratch_databases()

    response = operator.post(support.verify_url(backed_up["id"]), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    assert [check["name"] for check in body["checks"]] == [
        "manifest",
        "signature",
        "checksum",
        "restore",
        "row_counts",
        "migrations",
    ]
    assert all(check["ok"] for check in body["checks"])
    backup = Backup.objects.get(pk=backed_up["id"])
    assert backup.status == BackupStatus.VERIFIED and backup.verify_ok is True
    assert backup.verified_at is not None and backup.verify_duration_ms is not None
    assert operator.get(support.backup_url(backed_up["id"])).json()["verified_at"] is not None
    assert _scratch_databases_left(scratch_before) == set()  # the scratch database was dropped


def test_it_catches_row_counts_that_disagree_with_the_manifest(operator, backed_up):
    manifest = support.read_manifest(backed_up["file"])
    manifest["row_counts"]["core_record"] += 1
    support.write_manifest(backed_up["file"], manifest)

    body = operator.post(support.verify_url(backed_up["id"]), format="json").json()

    assert body["ok"] is False
    failed = [check for check in body["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["row_counts"]
    assert "core_record: manifest 6, restored 5" in failed[0]["detail"]
    assert Backup.objects.get(pk=backed_up["id"]).status == BackupStatus.FAILED


def test_it_catches_a_flipped_byte(operator, backed_up):
    support.flip_byte(backed_up["file"])

    body = operator.post(support.verify_url(backed_up["id"]), format="json").json()

    assert body["ok"] is False
    checksum = next(check for check in body["checks"] if check["name"] == "checksum")
    assert not checksum["ok"] and "does not match its manifest" in checksum["detail"]


def test_verifybackup_latest_passes_and_a_failure_exits_non_zero(backed_up, capsys):
    call_command("verifybackup")
    assert f"Backup {backed_up['id']} verified" in capsys.readouterr().out

    support.truncate(backed_up["file"])
    with pytest.raises(CommandError, match="failed verification: checksum"):
        call_command("verifybackup", backed_up["id"])
    assert Backup.objects.get(pk=backed_up["id"]).status == BackupStatus.FAILED


def test_verifybackup_of_an_unknown_id_fails(db):
    with pytest.raises(CommandError, match="no backup 'nope'"):
        call_command("verifybackup", "nope")
