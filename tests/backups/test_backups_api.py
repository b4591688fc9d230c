"""The backups endpoints: operators only, listing, reading and deleting backups."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from backups.models import Backup, Restore
from tests.backups import support
from tests.core.records_support import assert_problem

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINTS = [
    ("get", "list"),
    ("post", "list"),
    ("get", "detail"),
    ("delete", "detail"),
    ("post", "verify"),
    ("post", "restore"),
]


@pytest.fixture
def backed_up(operator, owner):
    support.populate(owner.service, records=3)
    return operator.post(support.backups_url(), {}, format="json").json()


def _url(kind: str, backup_id: str) -> str:
    return {
        "list": support.backups_url(),
        "detail": support.backup_url(backup_id),
        "verify": support.verify_url(backup_id),
        "restore": support.restore_url(backup_id),
    }[kind]


@pytest.mark.parametrize(("method", "kind"), ENDPOINTS)
def test_a_service_gets_403_on_every_backup_endpoint(owner, backed_up, backup_dir, method, kind):
    client = owner  # a service, even the owner of every collection
    files = sorted(path.name for path in backup_dir.rglob("*"))
    body = {"confirm": backed_up["id"]} if kind == "restore" else {}

    response = getattr(client, method)(_url(kind, backed_up["id"]), body, format="json")

    assert_problem(response, 403, "forbidden")
    assert sorted(path.name for path in backup_dir.rglob("*")) == files  # nothing dumped, deleted or restored
    assert list(Backup.objects.values_list("id", flat=True)) == [backed_up["id"]]
    assert Backup.objects.get().verified_at is None and not Restore.objects.exists()


@pytest.mark.parametrize(("method", "kind"), ENDPOINTS)
def test_an_unauthenticated_caller_gets_401(db, method, kind):
    assert_problem(getattr(APIClient(), method)(_url(kind, "20200101-000000-000000"), {}, format="json"), 401)


def test_an_operator_needs_the_permission_of_each_action(operator, operator_user, backed_up):
    operator_user.is_superuser = False
    operator_user.save()
    assert_problem(operator.get(support.backups_url()), 403)
    operator_user.user_permissions.add(Permission.objects.get(codename="view_backup"))
    operator_user = type(operator_user).objects.get(pk=operator_user.pk)
    operator.force_login(operator_user)

    assert operator.get(support.backups_url()).status_code == 200
    problem = assert_problem(operator.post(support.verify_url(backed_up["id"])), 403)
    assert "backups.verify_backup" in problem["detail"]
    problem = assert_problem(
        operator.post(support.restore_url(backed_up["id"]), {"confirm": backed_up["id"]}, format="json"), 403
    )
    assert "backups.restore_backup" in problem["detail"]


def test_the_list_is_newest_first_and_paged_without_extra_queries(
    operator, backed_up, django_assert_num_queries
):
    ids = [backed_up["id"]] + [
        operator.post(support.backups_url(), {}, format="json").json()["id"] for _ in range(2)
    ]

    with django_assert_num_queries(3):  # the session, its user, one page of backups
        first = operator.get(support.backups_url(), {"limit": 2}).json()
    second = operator.get(first["next"]).json()

    assert [item["id"] for item in first["results"] + second["results"]] == ids[::-1]
    assert second["next"] is None


def test_a_backup_is_read_by_id_and_an_unknown_id_is_404(operator, backed_up):
    assert operator.get(support.backup_url(backed_up["id"])).json() == backed_up
    assert_problem(operator.get(support.backup_url("nope")), 404, "backup_not_found")
    assert_problem(operator.post(support.restore_url("nope"), {"confirm": "nope"}, format="json"), 404)


def test_deleting_a_backup_removes_dump_manifest_and_catalog_entry(operator, backed_up):
    dump = support.backup_path(backed_up["file"])
    manifest = support.backup_path(backed_up["file"] + ".metadata")
    assert dump.exists() and manifest.exists()

    response = operator.delete(support.backup_url(backed_up["id"]))

    assert response.status_code == 204
    assert not dump.exists() and not manifest.exists()
    assert not Backup.objects.filter(pk=backed_up["id"]).exists()
    assert_problem(operator.get(support.backup_url(backed_up["id"])), 404)


def test_unknown_fields_are_refused(operator, backed_up):
    assert_problem(
        operator.post(support.backups_url(), {"notes": "x"}, format="json"), 422, "validation_failed"
    )
    response = operator.post(
        support.restore_url(backed_up["id"]), {"confirm": backed_up["id"], "force": True}, format="json"
    )
    assert_problem(response, 422, "validation_failed")


def test_a_retried_create_with_the_same_idempotency_key_makes_one_backup(operator, db):
    first = operator.post(
        support.backups_url(), {"note": "n"}, format="json", HTTP_IDEMPOTENCY_KEY="nightly-1"
    )
    again = operator.post(
        support.backups_url(), {"note": "n"}, format="json", HTTP_IDEMPOTENCY_KEY="nightly-1"
    )

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Backup.objects.count() == 1
