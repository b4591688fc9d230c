"""Service bearer tokens through the HTTP API: who gets in, who gets 401, and what is stored."""

import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core import services
from core.errors import ValidationFailed
from core.models import Service, ServiceToken
from tests.actors import TEST_ACTOR

URL = reverse("collection-list")


def client_with(authorization: str | None) -> APIClient:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


def assert_unauthorized(response) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="nucleus"'
    body = response.json()
    assert body["status"] == 401
    assert body["code"] in ("not_authenticated", "authentication_failed")
    assert body["detail"]
    assert set(body) >= {"type", "title", "status", "detail", "code"}


@pytest.fixture
def service(db) -> Service:
    service, _ = services.service_ensure(actor=TEST_ACTOR, name="taxon", description="the classifier")
    return service


def test_a_valid_bearer_token_is_accepted(service):
    _, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    response = client_with(f"Bearer {plain}").get(URL)
    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None}


def test_the_bearer_keyword_is_case_insensitive(service):
    _, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    assert client_with(f"bearer {plain}").get(URL).status_code == 200


def test_writes_made_with_a_token_are_attributed_to_its_service(service):
    _, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    response = client_with(f"Bearer {plain}").post(URL, {"name": "things"}, format="json")
    assert response.status_code == 201
    assert response.json()["owner"] == "taxon"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer two parts",
        "Token abc",
        "Basic dXNlcjpwYXNz",
        "Bearer nuc_thisisnotarealtoken",
    ],
    ids=[
        "missing",
        "empty",
        "keyword-only",
        "keyword-space",
        "three-parts",
        "other-scheme",
        "basic",
        "unknown",
    ],
)
def test_missing_garbled_or_unknown_tokens_get_401(service, authorization):
    services.token_issue(actor=TEST_ACTOR, service=service)
    assert_unauthorized(client_with(authorization).get(URL))


def test_a_non_ascii_token_gets_401(service):
    response = client_with("Bearer n\u00fcc_token".encode().decode("latin-1")).get(URL)
    assert_unauthorized(response)


def test_a_refused_write_writes_nothing(service):
    response = client_with("Bearer nuc_unknown").post(URL, {"name": "things"}, format="json")
    assert_unauthorized(response)
    assert not service.collections.exists()


def test_a_revoked_token_gets_401(service):
    token, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    services.token_revoke(actor=TEST_ACTOR, token=token)
    response = client_with(f"Bearer {plain}").get(URL)
    assert_unauthorized(response)
    assert "revoked" in response.json()["detail"]
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token.last_used_at is None


def test_revoking_twice_keeps_the_first_revocation_time(service):
    token, _ = services.token_issue(actor=TEST_ACTOR, service=service)
    first = services.token_revoke(actor=TEST_ACTOR, token=token).revoked_at
    services.token_revoke(actor=TEST_ACTOR, token=ServiceToken.objects.get(pk=token.pk))
    assert ServiceToken.objects.get(pk=token.pk).revoked_at == first


def test_an_expired_token_gets_401(service):
    token, plain = services.token_issue(
        actor=TEST_ACTOR, service=service, expires_at=timezone.now() + timedelta(hours=1)
    )
    client = client_with(f"Bearer {plain}")
    assert client.get(URL).status_code == 200

    ServiceToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(URL)
    assert_unauthorized(response)
    assert "expired" in response.json()["detail"]


def test_a_token_that_has_not_expired_yet_is_accepted(service):
    _, plain = services.token_issue(
        actor=TEST_ACTOR, service=service, expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert client_with(f"Bearer {plain}").get(URL).status_code == 200


def test_an_inactive_service_gets_401_and_is_let_in_again_when_reactivated(service):
    _, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    client = client_with(f"Bearer {plain}")
    services.service_update(actor=TEST_ACTOR, service=service, is_active=False)
    response = client.get(URL)
    assert_unauthorized(response)
    assert "inactive" in response.json()["detail"]

    services.service_update(actor=TEST_ACTOR, service=service, is_active=True)
    assert client.get(URL).status_code == 200


def test_last_used_at_is_recorded(service):
    token, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    assert token.last_used_at is None
    before = timezone.now()
    assert client_with(f"Bearer {plain}").get(URL).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert before <= token.last_used_at <= timezone.now()


def test_last_used_at_is_not_recorded_for_refused_tokens(service):
    token, plain = services.token_issue(actor=TEST_ACTOR, service=service)
    services.service_update(actor=TEST_ACTOR, service=service, is_active=False)
    assert client_with(f"Bearer {plain}").get(URL).status_code == 401
    token.refresh_from_db()
    assert token.last_used_at is None


def test_the_token_is_stored_only_as_its_sha256(service):
    token, plain = services.token_issue(actor=TEST_ACTOR, service=service, label="ci")
    assert plain.startswith("nuc_")
    token.refresh_from_db()
    assert token.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert token.prefix == plain[:12]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM core_servicetoken WHERE id = %s", [token.pk])
        row = cursor.fetchone()
    assert row is not None
    for value in row:
        assert plain not in str(value)


def test_several_tokens_of_one_service_all_work(service):
    plains = [services.token_issue(actor=TEST_ACTOR, service=service, label=f"t{n}")[1] for n in range(3)]
    assert len(set(plains)) == 3
    for plain in plains:
        assert client_with(f"Bearer {plain}").get(URL).status_code == 200
    assert service.tokens.count() == 3
    assert service.tokens.filter(last_used_at__isnull=False).count() == 3


def test_revoking_one_token_leaves_the_others_working(service):
    old, old_plain = services.token_issue(actor=TEST_ACTOR, service=service, label="old")
    _, new_plain = services.token_issue(actor=TEST_ACTOR, service=service, label="new")
    services.token_revoke(actor=TEST_ACTOR, token=old)
    assert client_with(f"Bearer {old_plain}").get(URL).status_code == 401
    assert client_with(f"Bearer {new_plain}").get(URL).status_code == 200


def test_token_issue_refuses_an_expiry_in_the_past(service):
    with pytest.raises(ValidationFailed) as refused:
        services.token_issue(
            actor=TEST_ACTOR, service=service, expires_at=timezone.now() - timedelta(seconds=1)
        )
    assert refused.value.code == "invalid_expiry"
    assert not ServiceToken.objects.exists()
