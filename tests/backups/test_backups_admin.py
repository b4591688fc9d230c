"""The backups admin: list with size, age and verification, back up now, verify, guarded restore."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backups.models import Backup, BackupStatus, Restore
from tests.backups import support

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client_(client, operator_user):
    client.force_login(operator_user)
    return client


def _changelist(client):
    return client.get(reverse("admin:backups_backup_changelist"))


def test_the_list_warns_when_there_is_no_backup_and_back_up_now_makes_one(admin_client_):
    assert "There is no usable backup of this database" in _changelist(admin_client_).content.decode()

    response = admin_client_.post(
        reverse("admin:backups_backup_now"), {"note": "from the admin"}, follow=True
    )

    backup = Backup.objects.get()
    page = response.content.decode()
    assert f"Backed up as {backup.id}" in page
    assert backup.note == "from the admin" and backup.created_by == "operator:alice"
    assert "no usable backup" not in page and "NUCLEUS_BACKUP_MAX_AGE_HOURS" not in page
    assert backup.file in _changelist(admin_client_).content.decode() or backup.id in page


def test_the_list_warns_when_the_newest_backup_is_too_old(admin_client_, settings):
    admin_client_.post(reverse("admin:backups_backup_now"))
    Backup.objects.update(
        created_at=timezone.now() - timedelta(hours=settings.NUCLEUS_BACKUP_MAX_AGE_HOURS + 1)
    )

    page = _changelist(admin_client_).content.decode()

    assert "NUCLEUS_BACKUP_MAX_AGE_HOURS" in page
    assert "nucleus-backup-warning" in admin_client_.get(reverse("admin:index")).content.decode()


def test_the_verify_action_records_the_result(admin_client_):
    admin_client_.post(reverse("admin:backups_backup_now"))
    backup = Backup.objects.get()

    response = admin_client_.post(
        reverse("admin:backups_backup_changelist"),
        {"action": "verify_selected", "_selected_action": [backup.pk]},
        follow=True,
    )

    assert f"{backup.id} verified" in response.content.decode()
    assert Backup.objects.get().status == BackupStatus.VERIFIED


def test_the_restore_page_names_what_will_be_lost_and_needs_the_id(admin_client_, owner):
    support.populate(owner.service, records=3)
    admin_client_.post(reverse("admin:backups_backup_now"))
    backup = Backup.objects.get()
    support.change_everything(owner.service)
    changed = support.content_checksum()
    url = reverse("admin:backups_backup_restore", args=[backup.pk])

    page = admin_client_.get(url).content.decode()

    assert "What will be lost" in page and "revisions of history were written after the backup" in page
    assert "core_record" in page and "core_collection" in page  # tables whose rows will change
    wrong = admin_client_.post(url, {"confirm": "yes"})
    assert "Type the backup" in wrong.content.decode()
    assert support.content_checksum() == changed and not Restore.objects.exists()


def test_the_admin_restores_with_the_right_id(admin_client_, owner):
    support.populate(owner.service, records=3)
    admin_client_.post(reverse("admin:backups_backup_now"))
    backup = Backup.objects.get()
    expected = support.content_checksum()
    support.change_everything(owner.service)

    response = admin_client_.post(
        reverse("admin:backups_backup_restore", args=[backup.pk]), {"confirm": backup.id}
    )

    assert response.status_code == 302
    assert support.content_checksum() == expected
    restore = Restore.objects.get()
    assert restore.via == "admin" and restore.outcome == "succeeded" and restore.safety_backup
