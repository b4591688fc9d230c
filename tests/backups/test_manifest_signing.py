"""Signed manifests: a backup planted or edited by someone without the key is never verified, listed or
restored (409 backup_signature_invalid, the database untouched)."""

import hashlib
import hmac
import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from backups.models import Backup, BackupStatus, Restore, RestoreOutcome
from backups.services import backups_apply_retention, catalog_rebuild
from core.models import Collection
from core.services import record_create
from tests.actors import TEST_ACTOR
from tests.backups import support
from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db(transaction=True)

SIGNATURE_INVALID = "backup_signature_invalid"


@pytest.fixture
def two_backups(operator, owner):
    """A backup of some data, then of changed data; the database then changes once more."""
    support.populate(owner.service, records=5)
    first = operator.post(support.backups_url(), {"note": "first"}, format="json").json()
    support.change_everything(owner.service)
    second = operator.post(support.backups_url(), {"note": "second"}, format="json").json()
    _write_a_record("after-both")
    return first, second


def _write_a_record(key: str) -> None:
    record_create(collection=Collection.objects.get(name="items"), key=key, data={}, actor=TEST_ACTOR)


def _assert_untouched(before: str, *, safety_backups: int = 0) -> None:
    assert support.content_checksum() == before
    assert Backup.objects.filter(kind="safety").count() == safety_backups


def _expected_signature(manifest: dict, secret: str) -> str:
    """HMAC-SHA256 as the README documents it, computed here without Nucleus' code."""
    key = hashlib.sha256(b"nucleus.backups.manifest" + secret.encode()).digest()
    payload = {name: value for name, value in manifest.items() if name not in ("signature", "file")}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def test_every_manifest_carries_the_documented_signature(operator, owner, tmp_path):
    support.populate(owner.service, records=3)
    backup = operator.post(support.backups_url(), {}, format="json").json()
    call_command("dbbackup", "--output-path", str(tmp_path / "offsite.dump"), "--quiet")

    manifest = support.read_manifest(backup["file"])
    exported = json.loads((tmp_path / "offsite.dump.metadata").read_text())

    assert manifest["signature"] == _expected_signature(manifest, settings.SECRET_KEY)
    assert exported["signature"] == _expected_signature(exported, settings.SECRET_KEY)


# --- restore ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["kept", "removed", "forged"])
def test_the_api_refuses_to_restore_a_backup_whose_dump_was_swapped(operator, two_backups, signature):
    first, second = two_backups
    support.replace_backup(second["file"], first["file"], signature=signature)
    before = support.content_checksum()

    response = operator.post(support.restore_url(second["id"]), {"confirm": second["id"]}, format="json")

    problem = assert_problem(response, 409, SIGNATURE_INVALID)
    assert second["file"] in problem["detail"]
    _assert_untouched(before)
    restore = Restore.objects.get(source_backup=second["id"])
    assert restore.outcome == RestoreOutcome.REFUSED and restore.safety_backup == ""
    assert Backup.objects.get(pk=second["id"]).status == BackupStatus.FAILED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("note", "edited"),
        ("created_by", "operator:mallory"),
        ("row_counts", {"core_record": 0}),
        ("migrations", []),
        ("created_at", "2031-01-01T00:00:00.000Z"),
    ],
)
def test_a_manifest_edited_after_signing_is_refused(operator, two_backups, field, value):
    _, second = two_backups
    manifest = support.read_manifest(second["file"])
    manifest[field] = value
    support.backup_path(second["file"] + ".metadata").write_text(json.dumps(manifest))
    before = support.content_checksum()

    restored = operator.post(support.restore_url(second["id"]), {"confirm": second["id"]}, format="json")
    verified = operator.post(support.verify_url(second["id"]), format="json")

    assert_problem(restored, 409, SIGNATURE_INVALID)
    assert_problem(verified, 409, SIGNATURE_INVALID)
    _assert_untouched(before)


def test_the_admin_refuses_to_restore_or_verify_a_swapped_backup(client, operator_user, two_backups):
    first, second = two_backups
    support.replace_backup(second["file"], first["file"])
    client.force_login(operator_user)
    before = support.content_checksum()

    restored = client.post(
        reverse("admin:backups_backup_restore", args=[second["id"]]), {"confirm": second["id"]}, follow=True
    )
    verified = client.post(
        reverse("admin:backups_backup_changelist"),
        {"action": "verify_selected", "_selected_action": [second["id"]]},
        follow=True,
    )

    assert "Restore refused" in restored.content.decode()
    assert "not signed with" in restored.content.decode()
    assert f"{second['id']}: " in verified.content.decode()
    assert "verified in" not in verified.content.decode()
    _assert_untouched(before)


@pytest.mark.parametrize("shape", ["complete", "sloppy"])
def test_dbrestore_refuses_a_planted_backup(two_backups, tmp_path, shape):
    first, _ = two_backups
    planted = support.plant_backup(first["file"])
    if shape == "sloppy":  # nothing in an untrusted manifest is read, so its shape cannot crash anything
        manifest = support.read_manifest(planted["file"])
        del manifest["vendor"]
        manifest["created_at"] = "yesterday"
        support.backup_path(planted["file"] + ".metadata").write_text(json.dumps(manifest))
    url, checksum = support.database_for_subprocess(tmp_path)
    before = checksum()

    result = support.manage("dbrestore", "--noinput", "-i", planted["file"], database_url=url)

    support.assert_refused(result, SIGNATURE_INVALID)
    assert checksum() == before


def test_dbrestore_refuses_a_dump_outside_storage_with_an_unsigned_manifest(two_backups, tmp_path):
    target = tmp_path / "offsite.dump"
    call_command("dbbackup", "--output-path", str(target), "--quiet")
    manifest_path = tmp_path / "offsite.dump.metadata"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("signature")
    manifest_path.write_text(json.dumps(manifest))
    _write_a_record("after-export")
    url, checksum = support.database_for_subprocess(tmp_path)
    before = checksum()

    result = support.manage("dbrestore", "--noinput", "-I", str(target), database_url=url)

    support.assert_refused(result, SIGNATURE_INVALID)
    assert checksum() == before


def test_dbrestore_without_a_file_restores_the_newest_signed_backup_not_a_planted_one(two_backups, tmp_path):
    first, second = two_backups
    planted = support.plant_backup(first["file"], created_at="2099-01-01T00:00:00.000Z")
    url, _ = support.database_for_subprocess(tmp_path)

    result = support.manage("dbrestore", "--noinput", database_url=url)

    assert result.returncode == 0, result.stderr
    assert f"Restored backup {second['id']}" in result.stdout
    assert planted["id"] not in result.stdout


# --- verify ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["kept", "removed", "forged"])
def test_the_api_refuses_to_verify_a_backup_whose_dump_was_swapped(operator, two_backups, signature):
    first, second = two_backups
    support.replace_backup(second["file"], first["file"], signature=signature)

    response = operator.post(support.verify_url(second["id"]), format="json")

    assert_problem(response, 409, SIGNATURE_INVALID)
    backup = Backup.objects.get(pk=second["id"])
    assert backup.status == BackupStatus.FAILED and backup.verify_ok is False
    assert [check["name"] for check in backup.verify_checks if not check["ok"]] == ["signature"]


def test_verifybackup_refuses_a_swapped_backup_with_one_line(two_backups):
    first, second = two_backups
    support.replace_backup(second["file"], first["file"])

    with pytest.raises(CommandError, match=SIGNATURE_INVALID) as refused:
        call_command("verifybackup", second["id"])

    assert "\n" not in str(refused.value)
    assert Backup.objects.get(pk=second["id"]).status == BackupStatus.FAILED


# --- the catalog --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", [None, "forged"])
def test_the_catalog_rebuild_does_not_list_a_planted_backup(operator, two_backups, signature):
    first, second = two_backups
    planted = support.plant_backup(first["file"], signature=None if signature is None else "0" * 64)
    before = support.content_checksum()

    summary = catalog_rebuild()

    assert summary.untrusted_manifests == [planted["file"] + ".metadata"]
    assert set(Backup.objects.values_list("id", flat=True)) == {first["id"], second["id"]}
    listed = operator.get(support.backups_url()).json()["results"]
    assert planted["id"] not in {item["id"] for item in listed}
    assert_problem(operator.get(support.backup_url(planted["id"])), 404, "backup_not_found")
    response = operator.post(support.restore_url(planted["id"]), {"confirm": planted["id"]}, format="json")
    assert_problem(response, 404, "backup_not_found")
    assert_problem(operator.post(support.verify_url(planted["id"]), format="json"), 404)
    _assert_untouched(before)


def test_listbackups_shows_a_planted_backup_as_not_restorable(two_backups, capsys):
    first, _ = two_backups
    planted = support.plant_backup(first["file"])

    call_command("listbackups")

    line = next(line for line in capsys.readouterr().out.splitlines() if planted["file"] in line)
    assert "cannot be restored" in line and planted["id"] not in line
    assert not Backup.objects.filter(pk=planted["id"]).exists()


def test_the_admin_rebuild_says_how_many_manifests_it_did_not_trust(client, operator_user, two_backups):
    first, _ = two_backups
    support.plant_backup(first["file"])
    client.force_login(operator_user)

    response = client.post(reverse("admin:backups_backup_rebuild"), follow=True)

    assert "1 manifest is not signed with a known key" in response.content.decode()


def test_retention_never_deletes_because_of_a_planted_backup(two_backups):
    """Planted manifests dated in the future must not push real backups out of the newest N."""
    first, second = two_backups
    planted = support.plant_backup(first["file"], created_at="2099-01-01T00:00:00.000Z")

    deleted = backups_apply_retention(actor=TEST_ACTOR, keep=2, keep_days=0)

    assert deleted == []
    assert support.backup_path(first["file"]).exists() and support.backup_path(second["file"]).exists()
    assert support.backup_path(planted["file"]).exists()  # not ours to delete either


def test_the_engine_of_a_planted_manifest_is_not_believed(operator, two_backups):
    """The signature is checked before anything the manifest says (engine, migrations) is acted on."""
    _, second = two_backups
    manifest = support.read_manifest(second["file"])
    manifest["vendor"] = "sqlite" if connection.vendor == "postgresql" else "postgresql"
    support.backup_path(second["file"] + ".metadata").write_text(json.dumps(manifest))

    response = operator.post(support.restore_url(second["id"]), {"confirm": second["id"]}, format="json")

    assert_problem(response, 409, SIGNATURE_INVALID)
