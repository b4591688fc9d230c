"""Dumps that must never be restored: refused by the API and by dbrestore, the database untouched."""

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from backups.models import Backup, BackupStatus, Restore, RestoreOutcome
from backups.services import catalog_rebuild
from tests.backups import support
from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db(transaction=True)

FUTURE_MIGRATION = ("core", "9999_from_a_newer_nucleus")


def _flipped(backup: dict) -> str:
    support.flip_byte(backup["file"])
    return backup["id"]


def _truncated(backup: dict) -> str:
    support.truncate(backup["file"])
    return backup["id"]


def _foreign(backup: dict) -> str:
    support.plant_foreign_dump(backup["file"])
    catalog_rebuild()
    return "20200101-000000-f0e1d2"


DAMAGES = {
    "flipped_byte": (_flipped, "backup_corrupt"),
    "truncated": (_truncated, "backup_corrupt"),
    "other_engine": (_foreign, "backup_engine_mismatch"),
}


@pytest.fixture
def backed_up(operator, owner):
    """Data, and a backup of it."""
    support.populate(owner.service, records=5)
    return operator.post(support.backups_url(), {}, format="json").json()


@pytest.fixture
def from_the_future(operator, owner):
    """A backup made by a newer Nucleus: its database has a migration this code does not know."""
    support.populate(owner.service, records=5)
    recorder = MigrationRecorder(connection)
    recorder.record_applied(*FUTURE_MIGRATION)
    backup = operator.post(support.backups_url(), {}, format="json").json()
    recorder.record_unapplied(*FUTURE_MIGRATION)
    return backup


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_the_api_refuses_a_damaged_or_foreign_dump(operator, backed_up, damage):
    make, code = DAMAGES[damage]
    backup_id = make(backed_up)
    before = support.content_checksum()

    response = operator.post(support.restore_url(backup_id), {"confirm": backup_id}, format="json")

    assert_problem(response, 409, code)
    assert support.content_checksum() == before
    restore = Restore.objects.get(source_backup=backup_id)
    assert restore.outcome == RestoreOutcome.REFUSED and restore.safety_backup == ""
    assert Backup.objects.filter(kind="safety").count() == 0
    if code == "backup_corrupt":
        assert Backup.objects.get(pk=backup_id).status == BackupStatus.FAILED


def test_the_api_refuses_a_dump_with_unknown_migrations(operator, from_the_future):
    before = support.content_checksum()

    response = operator.post(
        support.restore_url(from_the_future["id"]), {"confirm": from_the_future["id"]}, format="json"
    )

    body = assert_problem(response, 409, "backup_unknown_migrations")
    assert body["unknown_migrations"] == ["core.9999_from_a_newer_nucleus"]
    assert support.content_checksum() == before
    assert "core.9999_from_a_newer_nucleus" in from_the_future["migrations"]


@pytest.mark.parametrize("confirm", [None, "", "yes", "20200101-000000-000000"])
def test_a_restore_without_the_right_confirmation_is_a_400(operator, backed_up, confirm):
    before = support.content_checksum()
    body = {} if confirm is None else {"confirm": confirm}

    response = operator.post(support.restore_url(backed_up["id"]), body, format="json")

    problem = assert_problem(response, 400)
    assert problem["code"] in {"confirmation_required", "confirmation_mismatch"}
    assert backed_up["id"] in problem["detail"]
    assert support.content_checksum() == before
    assert not Restore.objects.exists() and Backup.objects.count() == 1


# --- the command line: dbrestore refuses with one line on stderr and a non-zero exit ------------------


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_dbrestore_refuses_a_damaged_or_foreign_dump(backed_up, damage, tmp_path):
    make, code = DAMAGES[damage]
    backup_id = make(backed_up)
    file = Backup.objects.get(pk=backup_id).file
    url, checksum = support.database_for_subprocess(tmp_path)
    before = checksum()

    result = support.manage("dbrestore", "--noinput", "--input-filename", file, database_url=url)

    support.assert_refused(result, code)
    assert checksum() == before


def test_dbrestore_refuses_a_dump_with_unknown_migrations(from_the_future, tmp_path):
    url, checksum = support.database_for_subprocess(tmp_path)
    before = checksum()

    result = support.manage("dbrestore", "--noinput", "-i", from_the_future["file"], database_url=url)

    support.assert_refused(result, "core.9999_from_a_newer_nucleus")
    assert checksum() == before


def test_dbrestore_refuses_a_dump_without_manifest(backed_up, tmp_path):
    support.backup_path(backed_up["file"] + ".metadata").unlink()
    url, checksum = support.database_for_subprocess(tmp_path)
    before = checksum()

    result = support.manage("dbrestore", "--noinput", "-i", backed_up["file"], database_url=url)

    support.assert_refused(result, "no readable manifest")
    assert checksum() == before
