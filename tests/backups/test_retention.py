"""Retention: keep the newest N per engine, those younger than D days, and the newest verified one."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import Backup
from backups.services import backup_create, backup_verify, backups_apply_retention
from tests.actors import TEST_ACTOR
from tests.backups import support

pytestmark = pytest.mark.django_db(transaction=True)


def _backups(count: int) -> list[Backup]:
    return [backup_create(actor=TEST_ACTOR) for _ in range(count)]


def _age(backup: Backup, days: int) -> None:
    """Make a backup look `days` old, in its manifest (the truth) and the catalog."""
    manifest = support.read_manifest(backup.file)
    moment = timezone.now() - timedelta(days=days)
    manifest["created_at"] = moment.isoformat().replace("+00:00", "Z")
    support.write_manifest(backup.file, manifest)
    Backup.objects.filter(pk=backup.pk).update(created_at=moment)


def test_it_keeps_the_newest_n_and_deletes_dump_and_manifest_of_the_others(backup_dir):
    oldest, old, *newest = _backups(5)
    for days, backup in enumerate([oldest, old, *newest][::-1]):
        _age(backup, days)

    deleted = backups_apply_retention(actor=TEST_ACTOR, keep=3, keep_days=0)

    assert set(deleted) == {oldest.id, old.id}
    assert set(Backup.objects.values_list("id", flat=True)) == {backup.id for backup in newest}
    for backup in (oldest, old):
        assert not support.backup_path(backup.file).exists()
        assert not support.backup_path(backup.file + ".metadata").exists()
    assert all(support.backup_path(backup.file).exists() for backup in newest)


def test_it_also_keeps_those_younger_than_the_given_days(backup_dir):
    backups = _backups(4)
    for days, backup in zip([10, 5, 2, 0], backups, strict=True):
        _age(backup, days)

    deleted = backups_apply_retention(actor=TEST_ACTOR, keep=1, keep_days=6)

    assert deleted == [backups[0].id]


@pytest.mark.slow
def test_it_always_keeps_the_newest_backup_that_passed_verification(backup_dir):
    verified, *others = _backups(3)
    assert backup_verify(backup=verified, actor=TEST_ACTOR)["ok"]
    for days, backup in zip([3, 2, 1], [verified, *others], strict=True):
        _age(backup, days)

    deleted = backups_apply_retention(actor=TEST_ACTOR, keep=1, keep_days=0)

    assert deleted == [others[0].id]
    assert Backup.objects.filter(pk=verified.pk).exists()
    assert not any(name.startswith(f"verify-{others[0].id}") for name in _journal(backup_dir))


def test_dbbackup_clean_applies_retention(settings, backup_dir):
    from django.core.management import call_command

    settings.NUCLEUS_BACKUP_KEEP = 2
    _backups(2)

    call_command("dbbackup", "--clean", "--quiet")

    assert Backup.objects.count() == 2
    assert len([path for path in backup_dir.glob("*.metadata")]) == 2


def _journal(backup_dir) -> list[str]:
    folder = backup_dir / "journal"
    return [path.name for path in folder.iterdir()] if folder.exists() else []


def test_retention_never_mixes_engines(backup_dir):
    mine = _backups(2)
    foreign = support.plant_foreign_dump(mine[0].file)
    manifest = support.read_manifest(foreign)
    assert json.dumps(manifest)

    deleted = backups_apply_retention(actor=TEST_ACTOR, keep=1, keep_days=0)

    assert deleted == [mine[0].id]  # the foreign dump is the newest of its own engine, and kept
    assert support.backup_path(foreign).exists()
