"""Inputs and permissions found by review that once returned 500 or let too much through."""

import base64

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient

from core import services
from core.errors import NotFound
from core.models import Collection, Grant, Record, ServiceToken
from core.pages import encode_cursor
from tests.actors import TEST_ACTOR

pytestmark = pytest.mark.django_db


def _problem(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    if code:
        assert body["code"] == code
    return body


def test_a_weak_etag_in_if_match_never_matches(owner, items):
    owner.post(reverse("record-list", args=["items"]), {"key": "a", "data": {"v": 1}}, format="json")
    url = reverse("record-detail", args=["items", "a"])
    response = owner.put(url, {"data": {"v": 2}}, format="json", HTTP_IF_MATCH='W/"1"')
    _problem(response, 412, "precondition_failed")
    assert Record.objects.get(key="a").data == {"v": 1}


@pytest.mark.parametrize("limit", ["²", "1" * 5000, "-1", "1.5"])
def test_a_limit_that_is_not_a_plain_number_is_a_400(owner, items, limit):
    _problem(owner.get(reverse("record-list", args=["items"]), {"limit": limit}), 400, "invalid_limit")


@pytest.mark.parametrize("position", ["²", "1" * 40, "x"])
def test_a_history_cursor_that_is_not_a_position_is_a_400(owner, items, position):
    owner.post(reverse("record-list", args=["items"]), {"key": "a", "data": {}}, format="json")
    # Signed as Nucleus signs cursors, so that the position itself is what is judged.
    response = owner.get(
        reverse("record-history", args=["items", "a"]), {"cursor": encode_cursor([position])}
    )
    _problem(response, 400, "invalid_cursor")


def test_a_deeply_nested_cursor_is_a_400(owner, items):
    cursor = base64.urlsafe_b64encode(b"[" * 5000).decode()
    _problem(owner.get(reverse("record-list", args=["items"]), {"cursor": cursor}), 400, "invalid_cursor")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_filter_at_the_edge_of_time_is_answered(owner, items, moment):
    response = owner.get(reverse("record-list", args=["items"]), {"updated_after": moment})
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        _problem(response, 400, "invalid_filter")


def test_an_idempotency_key_on_a_view_without_post_is_a_405(owner, items):
    response = owner.post(
        reverse("collection-detail", args=["items"]), {}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    _problem(response, 405)


@pytest.mark.parametrize(
    "url",
    ["/api/v1/collections/it%00ems/", "/api/v1/collections/items/records/?key_prefix=a%00b"],
)
def test_a_nul_in_the_url_is_a_400(owner, items, url):
    _problem(owner.get(url), 400, "nul_in_url")


# --- operators are held to their Django permissions -------------------------------------------


@pytest.fixture
def clerk(django_user_model):
    """A staff user with only the permissions a test gives it."""
    user = django_user_model.objects.create_user(username="clerk", password="unused-pass", is_staff=True)
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


def _grant_perms(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    user.__dict__.pop("_perm_cache", None)
    user.__dict__.pop("_user_perm_cache", None)


def test_an_operator_without_add_collection_cannot_create_one(clerk, owner):
    _grant_perms(clerk.user, "view_collection", "change_collection")
    response = clerk.post(reverse("collection-list"), {"name": "c", "owner": "owner"}, format="json")
    _problem(response, 403)
    assert not Collection.objects.filter(name="c").exists()


def test_an_operator_without_grant_permissions_cannot_grant(clerk, owner, outsider, items):
    _grant_perms(clerk.user, "change_collection")
    response = clerk.post(
        reverse("grant-list", args=["items"]), {"service": "outsider", "access": "read"}, format="json"
    )
    _problem(response, 403)
    assert not Grant.objects.filter(service=outsider.service).exists()


def test_an_operator_without_delete_record_cannot_force_delete_a_full_collection(clerk, owner, items):
    _grant_perms(clerk.user, "delete_collection")
    owner.post(reverse("record-list", args=["items"]), {"key": "a", "data": {}}, format="json")
    _problem(clerk.delete(reverse("collection-detail", args=["items"])), 409, "collection_not_empty")
    assert Record.objects.filter(collection=items).count() == 1


def test_an_operator_who_may_only_change_records_cannot_delete_them(clerk, owner, items):
    _grant_perms(clerk.user, "change_record", "view_record")
    owner.post(reverse("record-list", args=["items"]), {"key": "a", "data": {}}, format="json")
    _problem(clerk.delete(reverse("record-detail", args=["items", "a"])), 403)
    assert Record.objects.filter(collection=items, key="a").exists()


def test_a_staff_user_who_may_only_view_services_cannot_issue_tokens_in_the_admin(
    client, django_user_model, owner
):
    user = django_user_model.objects.create_user(username="viewer", password="unused-pass", is_staff=True)
    _grant_perms(user, "view_service")
    client.force_login(user)
    before = ServiceToken.objects.count()
    response = client.post(
        reverse("admin:core_service_changelist"),
        {"action": "issue_token", "_selected_action": [owner.service.pk]},
    )
    assert response.status_code in (200, 302, 403)
    assert ServiceToken.objects.count() == before


def test_a_staff_user_who_may_only_view_tokens_cannot_revoke_them(client, django_user_model, owner):
    user = django_user_model.objects.create_user(username="viewer", password="unused-pass", is_staff=True)
    _grant_perms(user, "view_servicetoken")
    client.force_login(user)
    token = ServiceToken.objects.get(service=owner.service)
    client.post(
        reverse("admin:core_servicetoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_write_to_a_collection_deleted_meanwhile_is_a_404(owner, items):
    # The view found the collection, then it was deleted before the write took its lock.
    services.collection_delete(collection=items, actor=TEST_ACTOR, force=False)
    with pytest.raises(NotFound):
        services.record_create(collection=items, key="a", data={}, actor=TEST_ACTOR)
    with pytest.raises(NotFound):
        services.records_bulk(collection=items, mode="insert", items=[{"data": {}}], actor=TEST_ACTOR)
    assert not Record.objects.exists()
