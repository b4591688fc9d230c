"""Failed admin sign-ins are counted per username and address, and lock that pair out (django-axes)."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
PASSWORD = "correct horse battery staple"  # the operator_user fixture's, user alice


def sign_in(client: Client, username: str, password: str, address: str = "192.0.2.10"):
    return client.post(
        f"{LOGIN}?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def fail(client: Client, times: int, username: str = "alice", address: str = "192.0.2.10") -> None:
    """Sign in with a wrong password `times` times: the form again, until the limit's failure locks out."""
    for attempt in range(1, times + 1):
        response = sign_in(client, username, "wrong", address)
        assert response.status_code == (429 if attempt >= settings.AXES_FAILURE_LIMIT else 200), attempt


def signed_in_as(client: Client) -> str | None:
    response = client.get(reverse("admin:index"))
    return response.context["user"].get_username() if response.status_code == 200 else None


def test_the_default_limit_is_five_failures_and_a_fifteen_minute_cool_off():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60


def test_it_locks_out_a_username_after_repeated_failures(client, operator_user):
    fail(client, settings.AXES_FAILURE_LIMIT - 1)
    response = sign_in(client, "alice", "wrong")

    assert response.status_code == 429
    html = response.content.decode()
    assert 'id="nucleus-locked-out"' in html
    assert "Too many failed sign-ins for alice" in html and "15 minutes" in html
    assert "manage.py axes_reset_username alice" in html
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == ("alice", "192.0.2.10", 5)


def test_a_locked_out_user_is_refused_even_with_the_right_password(client, operator_user):
    fail(client, settings.AXES_FAILURE_LIMIT)

    response = sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert signed_in_as(client) is None


def test_the_lockout_ends_after_the_cool_off(client, operator_user):
    fail(client, settings.AXES_FAILURE_LIMIT)
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )

    assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in_as(client) == "alice"
    assert not AccessAttempt.objects.exists()  # a success forgets the failures


def test_without_a_cool_off_the_lockout_lasts_until_reset(client, operator_user, settings):
    settings.AXES_COOLOFF_TIME = None
    fail(client, settings.AXES_FAILURE_LIMIT)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(days=30))

    response = sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert "until an administrator unlocks it" in response.content.decode()


def test_axes_reset_username_unlocks_at_once(client, operator_user):
    fail(client, settings.AXES_FAILURE_LIMIT)
    assert sign_in(client, "alice", PASSWORD).status_code == 429

    call_command("axes_reset_username", "alice")

    assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in_as(client) == "alice"


def test_another_address_and_another_user_can_still_sign_in(operator_user, django_user_model):
    django_user_model.objects.create_user("bob", password="bobs password", is_staff=True)
    attacker = Client()
    fail(attacker, settings.AXES_FAILURE_LIMIT, address="198.51.100.7")

    assert sign_in(Client(), "alice", PASSWORD, address="192.0.2.10").status_code == 302
    assert sign_in(attacker, "bob", "bobs password", address="198.51.100.7").status_code == 302


def test_a_success_before_the_limit_forgets_earlier_failures(client, operator_user):
    fail(client, settings.AXES_FAILURE_LIMIT - 1)
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()

    fail(client, settings.AXES_FAILURE_LIMIT - 1)

    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_service_tokens_and_operator_sessions_do_not_go_through_the_lockout(
    client, operator_user, owner, operator
):
    fail(client, settings.AXES_FAILURE_LIMIT)

    assert owner.get("/api/v1/collections/").status_code == 200
    assert operator.get("/api/v1/collections/").status_code == 200  # alice's session from before
    assert AccessAttempt.objects.get().failures_since_start == settings.AXES_FAILURE_LIMIT
