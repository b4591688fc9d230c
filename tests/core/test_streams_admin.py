"""Streams in the admin: last offset and consumer lag; events browsable read-only by type and offset."""

import re

import pytest
from django.urls import reverse

from core import services
from core.models import Event
from tests.actors import TEST_ACTOR
from tests.core.streams_support import keep_position

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-not-used"))
    return client


@pytest.fixture
def feed(owner):
    stream = services.collection_create(actor=TEST_ACTOR, name="feed", owner=owner.service, kind="stream")
    services.stream_append(
        stream=stream,
        events=[{"type": "order.placed" if n % 2 else "order.paid", "data": {"n": n}} for n in range(1, 11)],
        actor=TEST_ACTOR,
    )
    services.consumer_position_set(stream=stream, consumer="billing", offset=4, actor=TEST_ACTOR)
    services.consumer_position_set(stream=stream, consumer="audit", offset=9, actor=TEST_ACTOR)
    return stream


def test_the_stream_list_shows_last_offset_and_the_largest_consumer_lag(admin_client, feed):
    html = admin_client.get(reverse("admin:core_collection_changelist")).content.decode()
    row = html[html.index(">feed<") :][:1500]
    assert ">10<" in row  # last offset
    assert ">6<" in row  # billing is 6 behind


def test_a_stream_page_lists_its_consumers_with_their_lag(admin_client, feed):
    html = admin_client.get(reverse("admin:core_collection_change", args=[feed.pk])).content.decode()
    assert "billing" in html and "audit" in html
    assert "lag" in html


def test_a_stream_page_lists_every_services_consumers_with_their_service_and_lag(admin_client, feed, reader):
    keep_position(feed, "billing", 7, keeper="reader")

    html = admin_client.get(reverse("admin:core_collection_change", args=[feed.pk])).content.decode()

    inline = html[html.index('id="consumers-group"') :]
    rows = [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r'<td class="field-[^"]+">(.*?)</td>', row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", inline[: inline.index("</table>")], re.S)
    ]
    assert [row[:4] for row in rows if row] == [
        ["owner", "audit", "9", "1"],
        ["owner", "billing", "4", "6"],
        ["reader", "billing", "7", "3"],
    ]


def test_events_are_filterable_by_type_and_offset(admin_client, feed):
    url = reverse("admin:core_event_changelist")
    by_type = admin_client.get(url, {"type": "order.paid"}).content.decode()
    assert by_type.count("order.paid") >= 5
    assert "order.placed</td>" not in by_type
    by_offset = admin_client.get(url, {"offset__gte": "9"})
    assert by_offset.status_code == 200
    offsets = sorted(Event.objects.filter(offset__gte=9).values_list("offset", flat=True))
    assert offsets == [9, 10]
    assert by_offset.context["cl"].result_count == 2


def test_events_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, feed):
    event = Event.objects.get(stream=feed, offset=1)
    assert admin_client.get(reverse("admin:core_event_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:core_event_change", args=[event.pk]), {"type": "x"}).status_code
        == 403
    )
    assert (
        admin_client.post(reverse("admin:core_event_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    event.refresh_from_db()
    assert event.type == "order.paid" or event.type == "order.placed"
    assert Event.objects.filter(stream=feed).count() == 10
