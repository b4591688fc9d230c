"""POST with Idempotency-Key: a retry replays the first response and writes nothing."""

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from reversion.models import Revision, Version

from core import services
from core.idempotency import idempotency_claim, idempotency_release, request_fingerprint
from core.models import Collection, IdempotencyKey, IdempotencyState, Record, record_pk
from core.principals import Actor


def records_url(collection: str = "items") -> str:
    return reverse("record-list", args=[collection])


def history_of(collection: Collection, key: str) -> int:
    return Version.objects.get_for_object_reference(Record, record_pk(collection.pk, key)).count()


def post(client, url: str, body: dict, key: str | None = "key-1", **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(url, body, format="json", **extra)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    return body


def assert_replay_of(replay, first) -> None:
    assert replay.status_code == first.status_code
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    for header in ("ETag", "Location"):
        assert replay.get(header) == first.get(header)


# --- replays -------------------------------------------------------------------------------------


def test_a_retried_record_create_is_replayed_and_writes_nothing(owner, items):
    body = {"key": "a", "data": {"n": 1}}
    first = post(owner, records_url(), body)
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    assert first["ETag"] == '"1"'
    assert first["Location"].endswith(reverse("record-detail", args=["items", "a"]))
    revisions = Revision.objects.count()

    replay = post(owner, records_url(), body)

    assert_replay_of(replay, first)
    assert replay["ETag"] == '"1"'
    assert Record.objects.filter(collection=items).count() == 1
    assert Record.objects.get(collection=items, key="a").version == 1
    assert history_of(items, "a") == 1
    assert Revision.objects.count() == revisions
    entry = IdempotencyKey.objects.get()
    assert (entry.scope, entry.key, entry.state) == ("service:owner", "key-1", IdempotencyState.COMPLETED)


def test_a_retried_create_with_a_generated_key_returns_the_same_record(owner, items):
    first = post(owner, records_url(), {"data": {"n": 1}})
    replay = post(owner, records_url(), {"data": {"n": 1}})
    assert first.status_code == 201
    assert_replay_of(replay, first)
    assert Record.objects.filter(collection=items).count() == 1
    assert Record.objects.get(collection=items).key == first.json()["key"]


def test_the_replayed_record_stays_the_first_response_after_later_writes(owner, items):
    body = {"key": "a", "data": {"n": 1}}
    first = post(owner, records_url(), body)
    response = owner.put(reverse("record-detail", args=["items", "a"]), {"data": {"n": 2}}, format="json")
    assert response.status_code == 200
    replay = post(owner, records_url(), body)
    assert_replay_of(replay, first)
    assert replay.json()["data"] == {"n": 1}
    assert Record.objects.get(collection=items, key="a").version == 2


def test_a_retried_collection_create_is_replayed(owner, db):
    body = {"name": "things", "description": "some things"}
    first = post(owner, reverse("collection-list"), body)
    assert first.status_code == 201, first.content
    assert first["Location"].endswith(reverse("collection-detail", args=["things"]))

    replay = post(owner, reverse("collection-list"), body)

    assert_replay_of(replay, first)
    assert Collection.objects.filter(name="things").count() == 1


def test_a_retried_bulk_write_is_replayed_and_writes_nothing(owner, items):
    body = {"mode": "insert", "records": [{"key": f"k{i}", "data": {"i": i}} for i in range(3)]}
    first = post(owner, reverse("record-bulk", args=["items"]), body)
    assert first.status_code == 201, first.content
    revisions = Revision.objects.count()

    replay = post(owner, reverse("record-bulk", args=["items"]), body)

    assert_replay_of(replay, first)
    assert [item["key"] for item in replay.json()["results"]] == ["k0", "k1", "k2"]
    assert Record.objects.filter(collection=items).count() == 3
    assert all(history_of(items, f"k{i}") == 1 for i in range(3))
    assert Revision.objects.count() == revisions


def test_the_same_key_on_another_path_is_a_different_request(owner, items):
    post(owner, records_url(), {"key": "a", "data": {}})
    response = post(owner, reverse("collection-list"), {"key": "a", "data": {}})
    assert_problem(response, 422, "idempotency_key_reused")
    assert Collection.objects.count() == 1


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        pytest.param({"key": "a", "data": {"n": 2}}, id="other-data"),
        pytest.param({"key": "b", "data": {"n": 1}}, id="other-key"),
        pytest.param({"data": {"n": 1}, "key": "a", "extra": True}, id="extra-field"),
    ],
)
def test_the_same_key_with_a_different_body_gets_422_and_writes_nothing(owner, items, second):
    first = post(owner, records_url(), {"key": "a", "data": {"n": 1}})
    assert first.status_code == 201
    revisions = Revision.objects.count()

    response = post(owner, records_url(), second)

    body = assert_problem(response, 422, "idempotency_key_reused")
    assert body["title"] == "Idempotency key reused"
    assert body["type"] == "urn:nucleus:problem:idempotency_key_reused"
    assert "Idempotent-Replayed" not in response
    assert list(Record.objects.filter(collection=items).values_list("key", "version", "data")) == [
        ("a", 1, {"n": 1})
    ]
    assert Revision.objects.count() == revisions
    assert body["detail"]


def test_the_key_order_of_the_body_does_not_make_a_different_request(owner, items):
    first = owner.generic(
        "POST", records_url(), '{"key": "a", "data": {"x": 1, "y": 2}}',
        content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1",
    )  # fmt: skip
    replay = owner.generic(
        "POST", records_url(), '{"data": {"y": 2, "x": 1}, "key": "a"}',
        content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1",
    )  # fmt: skip
    assert_replay_of(replay, first)


def test_another_service_may_use_the_same_key_independently(owner, writer, items):
    body = {"key": "a", "data": {"by": "owner"}}
    first = post(owner, records_url(), body)
    assert first.status_code == 201

    other = post(writer, records_url(), {"key": "b", "data": {"by": "writer"}})

    assert other.status_code == 201, other.content
    assert "Idempotent-Replayed" not in other
    assert other.json()["key"] == "b"
    assert set(Record.objects.filter(collection=items).values_list("key", flat=True)) == {"a", "b"}
    assert set(IdempotencyKey.objects.values_list("scope", "key")) == {
        ("service:owner", "key-1"),
        ("service:writer", "key-1"),
    }
    assert_replay_of(post(owner, records_url(), body), first)


def test_an_operator_has_a_scope_of_its_own(owner, operator, items):
    body = {"name": "things", "owner": "owner"}
    first = post(operator, reverse("collection-list"), body)
    assert first.status_code == 201, first.content
    assert_replay_of(post(operator, reverse("collection-list"), body), first)
    assert IdempotencyKey.objects.get().scope == "operator:alice"
    # The same key from a service is that service's own: its different request is not refused.
    response = post(owner, records_url(), {"key": "a", "data": {}})
    assert response.status_code == 201, response.content
    assert IdempotencyKey.objects.count() == 2


def test_a_refusal_is_the_first_response_and_is_replayed(owner, items):
    actor = Actor(label="service:owner")
    services.record_create(collection=items, key="a", data={"old": True}, actor=actor)
    body = {"key": "a", "data": {"new": True}}

    conflict = post(owner, records_url(), body)
    assert_problem(conflict, 409, "record_exists")
    assert IdempotencyKey.objects.get().state == IdempotencyState.COMPLETED

    services.record_delete(collection=items, key="a", actor=actor)
    retry = post(owner, records_url(), body)

    # The same key and request get the first answer again, even though the conflict is gone.
    assert_problem(retry, 409, "record_exists")
    assert retry["Content-Type"] == "application/problem+json"
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == conflict.json()
    assert not Record.objects.filter(collection=items, key="a").exists()
    # A new key runs the request.
    fresh = owner.post(records_url(), body, format="json", HTTP_IDEMPOTENCY_KEY="key-2")
    assert fresh.status_code == 201, fresh.content


def test_a_validation_error_is_replayed_and_writes_nothing(owner, items):
    body = {"key": "a", "data": {"s": "\x00"}}
    response = post(owner, records_url(), body)
    assert_problem(response, 422, "invalid_data")
    again = post(owner, records_url(), body)
    assert_problem(again, 422, "invalid_data")
    assert again["Idempotent-Replayed"] == "true"
    assert not Record.objects.exists()


def test_a_transient_conflict_is_not_stored_so_a_retry_runs_again(owner, items):
    # A claim held by another request makes this one answer 409 in progress; that answer is not stored.
    body = {"key": "a", "data": {}}
    fingerprint = request_fingerprint(method="POST", path=records_url(), data=body)
    held = idempotency_claim(scope="service:owner", key="key-1", request_hash=fingerprint)
    assert_problem(post(owner, records_url(), body), 409, "idempotency_in_progress")
    idempotency_release(claim=held.claim)

    retry = post(owner, records_url(), body)

    assert retry.status_code == 201, retry.content
    assert "Idempotent-Replayed" not in retry


def test_a_request_in_progress_gets_409(owner, items):
    body = {"key": "a", "data": {"n": 1}}
    fingerprint = request_fingerprint(method="POST", path=records_url(), data=body)
    assert not idempotency_claim(scope="service:owner", key="key-1", request_hash=fingerprint).replay

    response = post(owner, records_url(), body)

    assert_problem(response, 409, "idempotency_in_progress")
    assert not Record.objects.exists()
    assert IdempotencyKey.objects.get().state == IdempotencyState.IN_PROGRESS


def test_a_different_request_while_one_is_in_progress_gets_422(owner, items):
    fingerprint = request_fingerprint(method="POST", path=records_url(), data={"key": "a", "data": {}})
    idempotency_claim(scope="service:owner", key="key-1", request_hash=fingerprint)
    response = post(owner, records_url(), {"key": "b", "data": {}})
    assert_problem(response, 422, "idempotency_key_reused")
    assert not Record.objects.exists()


@override_settings(NUCLEUS_IDEMPOTENCY_STALE_SECONDS=60)
def test_a_stale_claim_of_a_crashed_request_is_taken_over(owner, items):
    body = {"key": "a", "data": {"n": 1}}
    fingerprint = request_fingerprint(method="POST", path=records_url(), data=body)
    idempotency_claim(scope="service:owner", key="key-1", request_hash=fingerprint)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(seconds=61))

    response = post(owner, records_url(), body)

    assert response.status_code == 201, response.content
    assert "Idempotent-Replayed" not in response
    assert Record.objects.filter(collection=items, key="a").count() == 1
    assert IdempotencyKey.objects.get().state == IdempotencyState.COMPLETED


def test_an_expired_entry_is_not_replayed(owner, items):
    body = {"data": {"n": 1}}  # no key: each run creates a new record
    first = post(owner, records_url(), body)
    assert first.status_code == 201
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    second = post(owner, records_url(), body)

    assert second.status_code == 201, second.content
    assert "Idempotent-Replayed" not in second
    assert second.json()["key"] != first.json()["key"]
    assert Record.objects.filter(collection=items).count() == 2
    entry = IdempotencyKey.objects.get()
    assert entry.expires_at > timezone.now() + timedelta(hours=23)
    assert json.loads(entry.response_body)["key"] == second.json()["key"]


def test_an_entry_is_kept_for_the_configured_ttl(owner, items):
    post(owner, records_url(), {"data": {}})
    entry = IdempotencyKey.objects.get()
    assert timedelta(hours=23, minutes=59) < entry.expires_at - entry.created_at <= timedelta(hours=24)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("k" * 1000, id="1000-chars"),
        pytest.param("", id="empty"),
        pytest.param("tab\there", id="control-character"),
    ],
)
def test_an_unacceptable_key_gets_400_and_writes_nothing(owner, items, key):
    response = post(owner, records_url(), {"key": "a", "data": {}}, key=key)
    assert_problem(response, 400, "invalid_idempotency_key")
    assert not Record.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_a_key_of_255_printable_characters_is_accepted(owner, items):
    key = "K" * 200 + "é:/ ~!" + "x" * 49
    assert len(key) == 255
    first = post(owner, records_url(), {"key": "a", "data": {}}, key=key)
    assert first.status_code == 201
    assert_replay_of(post(owner, records_url(), {"key": "a", "data": {}}, key=key), first)


def test_the_key_is_ignored_on_methods_other_than_post(owner, items):
    url = reverse("record-detail", args=["items", "a"])
    first = owner.put(url, {"data": {"n": 1}}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    second = owner.put(url, {"data": {"n": 1}}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert "Idempotent-Replayed" not in second
    assert not IdempotencyKey.objects.exists()


# --- concurrency over real HTTP ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_create_exactly_one_record(live_server, owner, items):
    url = urlsplit(live_server.url)
    body = json.dumps({"key": "race", "data": {"n": 1}})
    headers = {
        "Authorization": f"Bearer {owner.token}",
        "Content-Type": "application/json",
        "Idempotency-Key": "race-key",
    }
    senders = 8
    start = threading.Barrier(senders)

    def send(_):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            start.wait(timeout=10)
            connection.request("POST", records_url(), body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Idempotent-Replayed"), json.loads(response.read())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=senders) as pool:
        results = list(pool.map(send, range(senders)))

    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {201, 409}, results
    originals = [payload for status, replayed, payload in results if status == 201 and replayed is None]
    replays = [payload for status, replayed, payload in results if status == 201 and replayed == "true"]
    assert len(originals) == 1, results
    assert all(payload == originals[0] for payload in replays)
    assert all(
        payload["code"] == "idempotency_in_progress" for status, _, payload in results if status == 409
    )
    assert Record.objects.filter(collection=items, key="race").count() == 1
    assert history_of(items, "race") == 1
    assert IdempotencyKey.objects.get().state == IdempotencyState.COMPLETED


def test_the_same_request_with_or_without_the_trailing_slash_is_the_same_request(owner, items):
    body = {"key": "a", "data": {}}
    first = post(owner, records_url(), body)
    assert first.status_code == 201
    assert_replay_of(post(owner, records_url().rstrip("/"), body), first)


def test_a_retry_with_another_if_match_is_a_different_request(owner, items):
    owner.post(records_url(), {"key": "a", "data": {"v": 1}}, format="json")
    owner.put(reverse("record-detail", args=["items", "a"]), {"data": {"v": 2}}, format="json")
    url = reverse("record-revert", args=["items", "a"])
    first = owner.post(url, {"version": 1}, format="json", HTTP_IF_MATCH='"2"', HTTP_IDEMPOTENCY_KEY="rv")
    assert first.status_code == 200, first.content
    other = owner.post(url, {"version": 1}, format="json", HTTP_IF_MATCH='"3"', HTTP_IDEMPOTENCY_KEY="rv")
    assert_problem(other, 422, "idempotency_key_reused")


def test_expired_keys_are_purged_when_new_keys_are_claimed(owner, items):
    post(owner, records_url(), {"key": "a", "data": {}})
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = owner.post(
        records_url(), {"key": "b", "data": {}}, format="json", HTTP_IDEMPOTENCY_KEY="other"
    )
    assert response.status_code == 201
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["other"]


def test_a_request_whose_claim_was_taken_over_cannot_complete_the_new_claim(owner, items):
    fingerprint = request_fingerprint(method="POST", path=records_url(), data={"key": "a", "data": {}})
    old = idempotency_claim(scope="service:owner", key="key-1", request_hash=fingerprint)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=1))
    new = idempotency_claim(scope="service:owner", key="key-1", request_hash=fingerprint)
    assert new.claim != old.claim
    idempotency_release(claim=old.claim)
    assert IdempotencyKey.objects.get().claim == new.claim
