"""Rotating the manifest signing key: fallbacks keep old backups usable, resignbackups moves them to the
current key, and unsigned backups from before signing are adopted only when the operator says so."""

import hashlib
import hmac
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.models import Backup
from backups.services import backup_create, backup_verify, catalog_rebuild
from core.errors import Conflict
from tests import processes
from tests.actors import TEST_ACTOR
from tests.backups import support
from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db(transaction=True)

OLD_KEY = "old-backup-signing-key-0123456789abcdefghijklmnop"
NEW_KEY = "new-backup-signing-key-0123456789abcdefghijklmnop"
SIGNATURE_INVALID = "backup_signature_invalid"


@pytest.fixture
def old_backup(operator, owner, settings):
    """A backup signed with OLD_KEY; then the data changes, and the key is rotated to NEW_KEY."""
    settings.NUCLEUS_BACKUP_SIGNING_KEY = OLD_KEY
    support.populate(owner.service, records=3)
    backup = operator.post(support.backups_url(), {}, format="json").json()
    backup["content"] = support.content_checksum()
    support.change_everything(owner.service)
    settings.NUCLEUS_BACKUP_SIGNING_KEY = NEW_KEY
    return backup


def _signed_with(manifest: dict, secret: str) -> bool:
    key = hashlib.sha256(b"nucleus.backups.manifest" + secret.encode()).digest()
    payload = {name: value for name, value in manifest.items() if name not in ("signature", "file")}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.compare_digest(
        manifest["signature"], hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
    )


def _manifest_bytes(file: str) -> bytes:
    return support.backup_path(file + ".metadata").read_bytes()


def _unsign(file: str) -> None:
    """Make a backup look as it did before manifests were signed."""
    manifest = support.read_manifest(file)
    del manifest["signature"]
    support.backup_path(file + ".metadata").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_backup_signed_with_a_previous_key_is_accepted_through_the_fallback(operator, old_backup, settings):
    settings.NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS = [OLD_KEY]

    verified = operator.post(support.verify_url(old_backup["id"]), format="json")
    restored = operator.post(
        support.restore_url(old_backup["id"]), {"confirm": old_backup["id"]}, format="json"
    )

    assert verified.status_code == 200 and verified.json()["ok"] is True, verified.content
    signature = next(check for check in verified.json()["checks"] if check["name"] == "signature")
    assert "fallback key" in signature["detail"] and "resignbackups" in signature["detail"]
    assert restored.status_code == 200, restored.content
    assert support.content_checksum() == old_backup["content"]


def test_without_the_previous_key_among_the_fallbacks_a_backup_is_refused(operator, old_backup):
    before = support.content_checksum()

    restored = operator.post(
        support.restore_url(old_backup["id"]), {"confirm": old_backup["id"]}, format="json"
    )
    verified = operator.post(support.verify_url(old_backup["id"]), format="json")

    assert_problem(restored, 409, SIGNATURE_INVALID)
    assert_problem(verified, 409, SIGNATURE_INVALID)
    assert support.content_checksum() == before
    assert catalog_rebuild().untrusted_manifests == [old_backup["file"] + ".metadata"]
    assert not Backup.objects.filter(pk=old_backup["id"]).exists()


def test_resignbackups_moves_a_fallback_signature_to_the_current_key(
    operator, old_backup, settings, tmp_path
):
    settings.NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS = ["another-retired-key-0123456789abcdefghij", OLD_KEY]
    url, _ = support.database_for_subprocess(tmp_path)

    # A subprocess, so that the keys are read from the environment as in production.
    result = support.manage("resignbackups", database_url=url)

    assert result.returncode == 0, result.stderr
    assert (
        f"{old_backup['file']}: signed with a fallback key, re-signed with the current key" in result.stdout
    )
    manifest = support.read_manifest(old_backup["file"])
    assert _signed_with(manifest, NEW_KEY)
    assert manifest["id"] == old_backup["id"] and manifest["sha256"] == old_backup["sha256"]
    settings.NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS = []
    verified = operator.post(support.verify_url(old_backup["id"]), format="json").json()
    assert verified["ok"] is True
    assert "current key" in next(c["detail"] for c in verified["checks"] if c["name"] == "signature")


@pytest.mark.slow
def test_a_changed_secret_key_keeps_backups_usable_through_secret_key_fallbacks(owner, settings):
    # Through the services: a changed SECRET_KEY also signs the operator's session out.
    settings.NUCLEUS_BACKUP_SIGNING_KEY = ""
    settings.SECRET_KEY = OLD_KEY
    support.populate(owner.service, records=3)
    backup = backup_create(actor=TEST_ACTOR)
    settings.SECRET_KEY = NEW_KEY
    with pytest.raises(Conflict) as refused:
        backup_verify(backup=backup, actor=TEST_ACTOR)
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]
    via_secret_key_fallbacks = backup_verify(backup=backup, actor=TEST_ACTOR)
    settings.NUCLEUS_BACKUP_SIGNING_KEY = "a-key-of-its-own-for-backups-0123456789abcdef"
    settings.SECRET_KEY_FALLBACKS = []
    settings.NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS = [OLD_KEY]
    moved_to_a_key_of_its_own = backup_verify(backup=backup, actor=TEST_ACTOR)

    assert refused.value.code == SIGNATURE_INVALID
    assert via_secret_key_fallbacks["ok"] is True, via_secret_key_fallbacks
    assert moved_to_a_key_of_its_own["ok"] is True, moved_to_a_key_of_its_own


def test_resignbackups_never_signs_a_planted_manifest(old_backup, settings):
    settings.NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS = [OLD_KEY]
    unsigned = support.plant_backup(old_backup["file"], tag="aaaaaa")
    forged = support.plant_backup(old_backup["file"], tag="bbbbbb", signature="ab" * 32)
    planted_bytes = {m["file"]: _manifest_bytes(m["file"]) for m in (unsigned, forged)}

    with pytest.raises(CommandError, match="2 backup manifests are not trusted") as without_flag:
        call_command("resignbackups")
    with pytest.raises(CommandError, match="1 backup manifests are not trusted") as named:
        call_command("resignbackups", "--adopt-unsigned", forged["file"])

    assert forged["file"] in str(without_flag.value) and unsigned["file"] in str(without_flag.value)
    assert forged["file"] in str(named.value)
    assert {m["file"]: _manifest_bytes(m["file"]) for m in (unsigned, forged)} == planted_bytes
    assert _signed_with(support.read_manifest(old_backup["file"]), NEW_KEY)  # the genuine one was re-signed
    assert set(Backup.objects.values_list("id", flat=True)) == {old_backup["id"]}


def test_an_unsigned_backup_from_before_signing_is_refused_until_adopted(operator, owner, capsys):
    support.populate(owner.service, records=3)
    legacy = operator.post(support.backups_url(), {}, format="json").json()
    expected = support.content_checksum()
    support.change_everything(owner.service)
    _unsign(legacy["file"])
    changed = support.content_checksum()

    refused = operator.post(support.restore_url(legacy["id"]), {"confirm": legacy["id"]}, format="json")
    assert "--adopt-unsigned" in assert_problem(refused, 409, SIGNATURE_INVALID)["detail"]
    assert support.content_checksum() == changed
    assert catalog_rebuild().untrusted_manifests == [legacy["file"] + ".metadata"]
    with pytest.raises(CommandError, match="not trusted"):
        call_command("resignbackups")
    assert "unsigned: adopt it with --adopt-unsigned" in capsys.readouterr().out
    call_command("resignbackups", "--adopt-unsigned", "--dry-run")
    assert f"{legacy['file']}: unsigned, would be adopted" in capsys.readouterr().out
    assert "signature" not in support.read_manifest(legacy["file"])

    call_command("resignbackups", "--adopt-unsigned", legacy["file"])

    assert f"{legacy['file']}: unsigned, adopted" in capsys.readouterr().out
    assert Backup.objects.filter(pk=legacy["id"]).exists()  # the catalog was rebuilt
    restored = operator.post(support.restore_url(legacy["id"]), {"confirm": legacy["id"]}, format="json")
    assert restored.status_code == 200, restored.content
    assert support.content_checksum() == expected


def _flip_a_byte_of_the_dump(file: str) -> None:
    support.flip_byte(file)


def _drop_the_engine(file: str) -> None:
    manifest = support.read_manifest(file)
    del manifest["vendor"]
    support.backup_path(file + ".metadata").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_a_byte_of_the_dump, "its dump does not match it"),
        (_drop_the_engine, "not a complete Nucleus manifest"),
    ],
)
def test_an_unsigned_manifest_that_does_not_describe_its_dump_is_not_adopted(
    operator, owner, capsys, damage, reason
):
    support.populate(owner.service, records=3)
    legacy = operator.post(support.backups_url(), {}, format="json").json()
    _unsign(legacy["file"])
    damage(legacy["file"])
    before = _manifest_bytes(legacy["file"])

    with pytest.raises(CommandError, match="not trusted"):
        call_command("resignbackups", "--adopt-unsigned")

    assert reason in capsys.readouterr().out
    assert _manifest_bytes(legacy["file"]) == before
    assert not Backup.objects.filter(pk=legacy["id"]).exists()


@pytest.mark.parametrize(
    "variables",
    [
        {"NUCLEUS_BACKUP_SIGNING_KEY": "too-short"},
        {"NUCLEUS_BACKUP_SIGNING_KEY_FALLBACKS": f"{OLD_KEY},short"},
    ],
)
def test_a_weak_signing_key_stops_start_up_saying_how_to_make_one(variables, tmp_path):
    env = processes.clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", **variables)

    result = processes.manage("check", env=env)

    assert result.returncode != 0
    assert "NUCLEUS_BACKUP_SIGNING_KEY" in result.stderr and "secrets.token_urlsafe" in result.stderr
