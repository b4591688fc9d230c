"""The admin index, the control room: the state of the service at a glance, with warnings."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backups.models import Backup, BackupStatus
from core import services
from schemas import services as schema_services
from tests.actors import TEST_ACTOR

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def admin(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def world(owner, items):
    """Three services (one inactive), a collection with two records, a stream with two consumers, a schema."""
    services.record_create(collection=items, key="a", data={"n": 1}, actor=TEST_ACTOR)
    services.record_create(collection=items, key="b", data={"text": "x" * 2000}, actor=TEST_ACTOR)
    services.service_update(
        service=items.grants.get(service__name="writer").service, is_active=False, actor=TEST_ACTOR
    )
    feed = services.collection_create(actor=TEST_ACTOR, name="feed", owner=owner.service, kind="stream")
    services.stream_append(
        stream=feed, events=[{"type": "t", "data": {}} for _ in range(7)], actor=TEST_ACTOR
    )
    services.consumer_position_set(stream=feed, consumer="billing", offset=2, actor=TEST_ACTOR)
    services.consumer_position_set(stream=feed, consumer="audit", offset=6, actor=TEST_ACTOR)
    schema_services.schema_create(name="item", owner=owner.service)
    return items, feed


def cell(html: str, element_id: str, until: str = "</td>") -> str:
    """The text from the element with this id to `until`, tags stripped and spaces collapsed."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?){until}', html, re.S)
    assert match, element_id
    return " ".join(re.sub(r"<[^>]+>", "", match.group(1)).split())


def catalog_entry(*, backup_id: str, age: timedelta, verified: bool) -> Backup:
    """A catalog row as a backup leaves it: what the index reads (tests/backups makes real backups)."""
    created = timezone.now() - age
    return Backup.objects.create(
        id=backup_id,
        status=BackupStatus.VERIFIED if verified else BackupStatus.AVAILABLE,
        file=f"{backup_id}.dump",
        size=1000,
        sha256="0" * 64,
        engine=connection.vendor,
        database="test",
        created_at=created,
        duration_ms=5,
        created_by="operator:root",
        verified_at=created + timedelta(minutes=1) if verified else None,
        verify_ok=True if verified else None,
    )


def test_the_index_shows_the_state_of_the_service(admin, world):
    items, feed = world

    response = admin.get(reverse("admin:index"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Control room | Nucleus admin</title>" in html
    assert cell(html, "nucleus-services") == "2 active of 3"
    # owner and reader hold one token each; the inactive writer's token does not count
    assert cell(html, "nucleus-tokens").startswith("2 usable")
    assert re.fullmatch(
        r"1 records collection holding 2 records \([\d.]+\s(bytes|KB) of data\); 1 stream",
        cell(html, "nucleus-collections"),
    )
    assert cell(html, "nucleus-schemas") == "1"
    assert cell(html, "nucleus-migrations") == "all applied"
    assert cell(html, "nucleus-database").startswith(connection.vendor + ", ")

    collections = cell(html, "nucleus-collections-table", "</table>")
    assert "items owner 2" in collections
    assert f"?collection__id__exact={items.pk}" in html
    assert cell(html, "nucleus-streams-table", "</table>").endswith("feed owner 7 2 5")
    assert f"?stream__id__exact={feed.pk}" in html


def test_the_index_warns_when_no_backup_is_verified(admin, world):
    catalog_entry(backup_id="unverified", age=timedelta(hours=1), verified=False)

    html = admin.get(reverse("admin:index")).content.decode()

    assert cell(html, "nucleus-verified-backup").startswith(
        "⚠ none: no backup of this database has been verified"
    )


def test_the_index_shows_the_age_of_the_newest_verified_backup(admin, world):
    catalog_entry(backup_id="old", age=timedelta(days=3), verified=True)
    catalog_entry(backup_id="recent", age=timedelta(hours=2), verified=True)

    html = admin.get(reverse("admin:index")).content.decode()

    assert cell(html, "nucleus-verified-backup") == "made 2 hours ago"


def test_the_index_warns_when_the_newest_verified_backup_is_too_old(admin, world, settings):
    settings.NUCLEUS_BACKUP_MAX_AGE_HOURS = 26
    catalog_entry(backup_id="old", age=timedelta(hours=30), verified=True)
    catalog_entry(backup_id="newer-unverified", age=timedelta(hours=1), verified=False)

    html = admin.get(reverse("admin:index")).content.decode()

    assert cell(html, "nucleus-verified-backup") == (
        "made 1 day, 6 hours ago ⚠ older than the 26 hours of NUCLEUS_BACKUP_MAX_AGE_HOURS: "
        "back up and verify now"
    )


def test_the_index_hides_backups_from_staff_who_may_not_see_them(client, django_user_model, world):
    staff = django_user_model.objects.create_user("bob", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_service"))
    client.force_login(staff)

    html = client.get(reverse("admin:index")).content.decode()

    assert 'id="nucleus-services"' in html
    assert 'id="nucleus-verified-backup"' not in html


def test_the_index_costs_the_same_queries_however_many_collections(admin, world, owner):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get(reverse("admin:index")).status_code == 200
        return len(captured)

    before = queries()
    for n in range(5):
        services.collection_create(actor=TEST_ACTOR, name=f"more{n}", owner=owner.service)
        services.collection_create(actor=TEST_ACTOR, name=f"stream{n}", owner=owner.service, kind="stream")

    assert queries() == before
