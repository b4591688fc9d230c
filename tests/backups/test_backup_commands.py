"""dbbackup, listbackups and dbrestore keep django-dbbackup's interface and keep the catalog."""

import pytest
from django.core.management import call_command
from django.db import connection

from backups.models import Backup, BackupKind, Restore, RestoreOutcome
from tests.backups import support

pytestmark = pytest.mark.django_db(transaction=True)


def test_dbbackup_writes_a_manifest_and_a_catalog_entry(owner, capsys):
    support.populate(owner.service, records=3)

    call_command("dbbackup", "--note", "nightly", "--servername", "eu1")

    backup = Backup.objects.get()
    assert backup.kind == BackupKind.COMMAND and backup.created_by == "command:dbbackup"
    assert backup.file.startswith(f"eu1-{connection.vendor}-") and backup.note == "nightly"
    manifest = support.read_manifest(backup.file)
    assert manifest["id"] == backup.id and manifest["sha256"] == backup.sha256
    assert manifest["vendor"] == connection.vendor and manifest["row_counts"]["core_record"] == 3
    assert manifest["engine"] == connection.settings_dict["ENGINE"]  # dbbackup's own metadata key
    assert backup.id in capsys.readouterr().out


def test_dbbackup_output_path_writes_the_manifest_beside_the_file(tmp_path):
    target = tmp_path / "elsewhere.dump"

    call_command("dbbackup", "--output-path", str(target), "--quiet")

    assert target.exists()
    assert (tmp_path / "elsewhere.dump.metadata").exists()
    assert not Backup.objects.exists()  # outside backup storage, outside the catalog


def test_dbbackup_refuses_encryption_with_one_line():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--encrypt is not supported"):
        call_command("dbbackup", "--encrypt")


def test_listbackups_rebuilds_the_catalog_and_lists_every_dump(capsys):
    call_command("dbbackup", "--quiet")
    first = Backup.objects.get()
    Backup.objects.all().delete()
    support.backup_path("nucleus-sqlite-2021-01-01-000000-000000.sqlite3").write_bytes(b"no manifest")

    call_command("listbackups")

    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["Name", "Datetime", "Id"]
    assert any(first.file in line and first.id in line and connection.vendor in line for line in out)
    assert any("no manifest: cannot be restored" in line for line in out)
    assert Backup.objects.filter(pk=first.pk).exists()


@pytest.mark.slow
def test_dbrestore_restores_the_newest_backup_and_records_it(owner, tmp_path):
    support.populate(owner.service, records=3)
    call_command("dbbackup", "--quiet")
    backup = Backup.objects.get()
    if connection.vendor == "postgresql":
        expected = support.content_checksum()
        support.change_everything(owner.service)
        url, checksum = support.database_url_of_tests(), support.content_checksum
    else:  # the subprocess restores into a file copy of the in-memory test database
        support.sqlite_snapshot(str(tmp_path / "at-backup.sqlite3"))
        expected = support.sqlite_file_checksum(str(tmp_path / "at-backup.sqlite3"))
        support.change_everything(owner.service)
        path = str(tmp_path / "live.sqlite3")
        url, checksum = support.sqlite_snapshot(path), lambda: support.sqlite_file_checksum(path)
        assert checksum() != expected

    result = support.manage("dbrestore", "--noinput", "--safety-backup", database_url=url)

    assert result.returncode == 0, result.stderr
    assert f"Restored backup {backup.id}" in result.stdout
    assert checksum() == expected
    if connection.vendor == "postgresql":
        restore = Restore.objects.get()
        assert restore.outcome == RestoreOutcome.SUCCEEDED and restore.via == "command"
        assert restore.requested_by == "command:dbrestore" and restore.safety_backup
        assert Backup.objects.filter(pk=restore.safety_backup, kind=BackupKind.SAFETY).exists()
