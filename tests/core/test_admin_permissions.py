"""The admin shows a staff user only what their view permissions allow: control room panels and pages."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from backups.models import Restore, RestoreOutcome
from core import services
from schemas import services as schema_services
from tests.actors import TEST_ACTOR

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")
NO_PANELS = "Your account may not view any part of the control room"


@pytest.fixture
def world(owner, reader, outsider, items):
    """What the control room shows: services, tokens, two records, a stream with a consumer, a schema."""
    services.record_create(collection=items, key="a", data={"n": 1}, actor=TEST_ACTOR)
    services.record_create(collection=items, key="b", data={"n": 2}, actor=TEST_ACTOR)
    feed = services.collection_create(actor=TEST_ACTOR, name="feed", owner=owner.service, kind="stream")
    services.stream_append(
        stream=feed, events=[{"type": "t", "data": {}} for _ in range(7)], actor=TEST_ACTOR
    )
    services.consumer_position_set(stream=feed, consumer="billing", offset=2, actor=TEST_ACTOR)
    schema_services.schema_create(name="invoice", owner=owner.service)
    return items, feed


@pytest.fixture
def staff(client, django_user_model):
    """Sign in a staff user holding exactly the given permissions ("app.codename")."""

    def sign_in(*perms: str):
        user = django_user_model.objects.create_user("bob", password="pw", is_staff=True)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        client.force_login(user)
        return client

    return sign_in


def panel_ids(html: str) -> set[str]:
    return set(re.findall(r'id="(nucleus-[a-z-]+)"', html))


def text(html: str) -> str:
    """The page's visible text, tags stripped and spaces collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>|<svg\b.*?</svg>", "", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def test_a_superuser_sees_every_panel(admin_client, world):
    html = admin_client.get(INDEX).content.decode()

    assert {
        "nucleus-services",
        "nucleus-tokens",
        "nucleus-collections",
        "nucleus-collections-table",
        "nucleus-streams-table",
        "nucleus-schemas",
        "nucleus-migrations",
        "nucleus-database",
        "nucleus-backup",
        "nucleus-verified-backup",
    } <= panel_ids(html)
    assert "items" in text(html) and "feed" in text(html) and "invoice" not in text(html)
    assert NO_PANELS not in html


def test_a_staff_user_without_permissions_sees_an_empty_control_room(staff, world):
    response = staff().get(INDEX)

    assert response.status_code == 200
    html = response.content.decode()
    visible = text(html)
    assert NO_PANELS in visible
    # The data is there (the superuser sees it); none of it reaches this page.
    for name in ("items", "feed", "owner", "reader", "outsider", "billing", "invoice"):
        assert name not in visible, name
    assert panel_ids(html) <= {"nucleus-control-room", "nucleus-no-panels"}
    assert "active of" not in visible and "usable" not in visible and "records collection" not in visible


def test_a_user_who_may_view_collections_sees_them_but_not_services(staff, world):
    html = staff("core.view_collection").get(INDEX).content.decode()

    panels = panel_ids(html)
    assert {"nucleus-collections", "nucleus-collections-table", "nucleus-streams-table"} <= panels
    assert not panels & {"nucleus-services", "nucleus-tokens", "nucleus-schemas", "nucleus-migrations"}
    assert not panels & {"nucleus-database", "nucleus-backup", "nucleus-verified-backup"}
    streams = text(html[html.index('id="nucleus-streams-table"') :])
    assert "feed owner 7" in streams
    # Consumers are their own permission: neither their number nor their lag shows.
    assert "consumers" not in streams.split("Collections")[0] and "lag" not in streams
    assert NO_PANELS not in html


def test_a_user_who_may_view_consumers_sees_their_lag(staff, world):
    html = staff("core.view_collection", "core.view_consumerposition").get(INDEX).content.decode()

    assert "feed owner 7 1 5" in text(html[html.index('id="nucleus-streams-table"') :])


def test_a_user_who_may_view_services_sees_their_count_and_no_collection(staff, world):
    html = staff("core.view_service").get(INDEX).content.decode()

    assert panel_ids(html) & {"nucleus-services", "nucleus-collections-table"} == {"nucleus-services"}
    assert "4 active of 4" in text(html)  # owner, reader, writer, outsider
    assert "items" not in text(html) and "feed" not in text(html)


@pytest.mark.parametrize(
    ("perm", "panels"),
    [
        ("core.view_servicetoken", {"nucleus-tokens"}),
        ("schemas.view_schema", {"nucleus-schemas"}),
        # The backup catalog already shows what these say: each backup's migrations, row counts and size.
        (
            "backups.view_backup",
            {"nucleus-migrations", "nucleus-database", "nucleus-backup", "nucleus-verified-backup"},
        ),
    ],
)
def test_each_panel_follows_its_permission(staff, world, perm, panels):
    html = staff(perm).get(INDEX).content.decode()

    assert panel_ids(html) - {"nucleus-control-room", "nucleus-glance"} == panels
    assert "items" not in text(html)


def test_collection_names_link_to_records_only_for_users_who_may_view_them(staff, world):
    items, feed = world
    html = staff("core.view_collection").get(INDEX).content.decode()

    assert f"?collection__id__exact={items.pk}" not in html
    assert f"?stream__id__exact={feed.pk}" not in html


def test_the_migrations_page_is_open_to_staff_as_the_api_is(staff):
    """Migration names are no service's data: GET /api/v1/system/migrations/ answers any staff user too."""
    client = staff()

    assert client.get(reverse("admin-migrations")).status_code == 200
    assert client.get(reverse("system-migrations")).status_code == 200


def test_the_collection_list_filters_by_owners_only_not_by_every_service(staff, world):
    html = staff("core.view_collection").get(reverse("admin:core_collection_changelist")).content.decode()

    assert "items" in text(html)
    assert "outsider" not in text(html) and "reader" not in text(html)


def test_the_collection_list_hides_consumer_lag_without_the_permission(staff, world):
    url = reverse("admin:core_collection_changelist")
    assert "consumer lag" not in staff("core.view_collection").get(url).content.decode().lower()


def test_list_filters_naming_other_models_need_their_view_permission(staff, world):
    client = staff("core.view_record", "core.view_event", "core.view_servicetoken")
    records = text(client.get(reverse("admin:core_record_changelist")).content.decode())
    events = text(client.get(reverse("admin:core_event_changelist")).content.decode())
    tokens = text(client.get(reverse("admin:core_servicetoken_changelist")).content.decode())

    # The rows name their own collection, stream or service; the filters would name all of them.
    assert "By collection" not in records and "feed" not in records
    assert "By stream" not in events and "items" not in events
    assert "By service" not in tokens


def test_the_backup_list_shows_restores_only_to_users_who_may_view_them(staff, world):
    now = timezone.now()
    Restore.objects.create(
        id="20250101-000000-aaaaaa",
        source_backup="20250101-000000-bbbbbb",
        requested_by="operator:carol",
        via="admin",
        started_at=now - timedelta(minutes=1),
        finished_at=now,
        duration_ms=60000,
        outcome=RestoreOutcome.SUCCEEDED,
    )
    html = staff("backups.view_backup").get(reverse("admin:backups_backup_changelist")).content.decode()

    assert "Recent restores" not in html and "operator:carol" not in html


# The figures /metrics exports per collection, stream, consumer and backup; a staff session reads it
# only with the permissions of the control-room panels that show them.
METRICS_PERMISSIONS = ("core.view_collection", "core.view_consumerposition", "backups.view_backup")


def test_metrics_refuse_a_staff_session_without_the_permissions_of_what_they_show(staff, world):
    response = staff("core.view_collection").get(reverse("metrics"))

    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert b"items" not in response.content and b"billing" not in response.content


def test_metrics_answer_a_staff_session_with_those_permissions(staff, world):
    response = staff(*METRICS_PERMISSIONS).get(reverse("metrics"))

    assert response.status_code == 200
    assert b'nucleus_collection_records{collection="items"} 2.0' in response.content
