"""Per-principal throttling: 429 with Retry-After, before any write, shared through the database.

Test settings turn throttling off (every request would cost one more query); these tests turn it on
with the `settings` fixture. Cross-process sharing through a real two-worker gunicorn is in
tests/test_production_profile.py.
"""

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from core import services, throttling
from core.models import IdempotencyKey, Record
from core.throttling import TABLE, Rate, parse_rate, throttle_hit
from tests.actors import TEST_ACTOR

COLLECTIONS = "/api/v1/collections/"
RECORDS = "/api/v1/collections/items/records/"
START_MS = 1_800_000_000_000


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, frozen at START_MS; move it with clock.advance(seconds)."""

    class Clock:
        now = START_MS

        def advance(self, seconds: float) -> None:
            self.now += int(seconds * 1000)

    frozen = Clock()
    monkeypatch.setattr(throttling, "now_ms", lambda: frozen.now)
    return frozen


@pytest.fixture
def three_per_minute(settings, clock):
    settings.NUCLEUS_THROTTLE_RATE = "3/min"
    return clock


def assert_throttled(response, retry_after: int) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == str(retry_after)
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (429, "throttled", "urn:nucleus:problem:throttled")
    assert f"Expected available in {retry_after} seconds." in body["detail"]


def test_service_over_its_rate_gets_429_with_retry_after(three_per_minute, owner, items):
    for _ in range(3):
        assert owner.get(COLLECTIONS).status_code == 200
    three_per_minute.advance(15)
    assert_throttled(owner.get(COLLECTIONS), retry_after=45)


def test_the_window_ends_and_requests_are_allowed_again(three_per_minute, owner, items):
    for _ in range(3):
        owner.get(COLLECTIONS)
    assert owner.get(COLLECTIONS).status_code == 429
    three_per_minute.advance(60)
    assert owner.get(COLLECTIONS).status_code == 200


def test_each_service_has_its_own_count(three_per_minute, owner, reader, items):
    for _ in range(4):
        owner.get(COLLECTIONS)
    assert owner.get(COLLECTIONS).status_code == 429
    assert reader.get(COLLECTIONS).status_code == 200


def test_all_tokens_of_a_service_share_its_count(three_per_minute, owner, items, client):
    for _ in range(3):
        owner.get(COLLECTIONS)
    _, second_token = services.token_issue(actor=TEST_ACTOR, service=owner.service, label="second")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {second_token}"
    assert client.get(COLLECTIONS).status_code == 429


def test_throttled_write_writes_nothing(three_per_minute, owner, items):
    for _ in range(3):
        owner.get(COLLECTIONS)
    response = owner.post(RECORDS, {"key": "late", "data": {}}, format="json")
    assert_throttled(response, retry_after=60)
    assert not Record.objects.filter(key="late").exists()


def test_throttled_post_is_not_stored_under_its_idempotency_key(three_per_minute, owner, items):
    for _ in range(3):
        owner.get(COLLECTIONS)
    request = {
        "path": RECORDS,
        "data": {"key": "k", "data": {}},
        "format": "json",
        "HTTP_IDEMPOTENCY_KEY": "once",
    }
    assert owner.post(**request).status_code == 429
    assert not IdempotencyKey.objects.exists()

    three_per_minute.advance(60)
    retried = owner.post(**request)
    assert retried.status_code == 201, retried.content
    assert "Idempotent-Replayed" not in retried
    assert Record.objects.filter(key="k").exists()


def test_operators_are_not_throttled_by_default(three_per_minute, operator, items):
    for _ in range(10):
        assert operator.get(COLLECTIONS).status_code == 200


def test_operators_may_have_a_rate_of_their_own(three_per_minute, settings, operator, items):
    settings.NUCLEUS_THROTTLE_OPERATOR_RATE = "2/hour"
    assert operator.get(COLLECTIONS).status_code == 200
    assert operator.get(COLLECTIONS).status_code == 200
    assert_throttled(operator.get(COLLECTIONS), retry_after=3600)


def test_failed_authentication_is_not_counted(three_per_minute, client, owner):
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer nuc_wrong"
    for _ in range(5):
        assert client.get(COLLECTIONS).status_code == 401
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        assert cursor.fetchone() == (0,)


@pytest.mark.parametrize("off", ["off", "0", "OFF"])
def test_off_turns_throttling_off_and_costs_nothing(settings, owner, items, off):
    settings.NUCLEUS_THROTTLE_RATE = off
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert owner.get(COLLECTIONS).status_code == 200
    assert not [query for query in queries if TABLE in query["sql"]]


def test_throttling_costs_one_statement_per_request(settings, owner, items):
    settings.NUCLEUS_THROTTLE_RATE = "off"
    owner.get(COLLECTIONS)
    with CaptureQueriesContext(connection) as unthrottled:
        owner.get(COLLECTIONS)
    settings.NUCLEUS_THROTTLE_RATE = "6000/min"
    with CaptureQueriesContext(connection) as throttled:
        owner.get(COLLECTIONS)
    assert len(throttled) == len(unthrottled) + 1
    (added,) = [query["sql"] for query in throttled if TABLE in query["sql"]]
    assert added.lstrip().startswith(f"INSERT INTO {TABLE}")


def test_the_count_is_committed_outside_any_request_transaction(
    transactional_db, settings, owner, items, monkeypatch
):
    """The UPSERT commits on its own: its row lock is never held while the view runs."""
    settings.NUCLEUS_THROTTLE_RATE = "3/min"
    seen = []

    def recording_hit(**kwargs):
        seen.append(connection.in_atomic_block)
        return throttle_hit(**kwargs)

    monkeypatch.setattr(throttling, "throttle_hit", recording_hit)
    try:
        assert owner.post(RECORDS, {"key": "a", "data": {}}, format="json").status_code == 201
        assert seen == [False]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE}")  # not flushed by Django: the table has no model


@pytest.mark.postgres
def test_concurrent_hits_are_all_counted(transactional_db):
    """One UPSERT per hit: no lost update between concurrent connections."""
    threads, hits_each = 8, 25
    barrier = threading.Barrier(threads)

    def hit_many():
        try:
            barrier.wait()
            for _ in range(hits_each):
                throttle_hit(scope="service:busy", period=3600)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hit_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    try:
        hits, _ = throttle_hit(scope="service:busy", period=3600)
        assert hits == threads * hits_each + 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE}")


# Rates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("6000/min", Rate(6000, 60)),
        ("100/s", Rate(100, 1)),
        ("5/second", Rate(5, 1)),
        (" 50000 / hour ", Rate(50000, 3600)),
        ("10/minutes", Rate(10, 60)),
        ("1/day", Rate(1, 86400)),
        ("0", None),
        ("off", None),
    ],
)
def test_rates_are_read_from_the_setting(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "6000", "0/min", "-1/min", "10/fortnight", "1.5/s", "10/min/2"])
def test_a_bad_rate_says_how_to_write_one(text):
    with pytest.raises(ImproperlyConfigured) as raised:
        parse_rate(text, setting="NUCLEUS_THROTTLE_OPERATOR_RATE")
    assert str(raised.value).startswith(f"NUCLEUS_THROTTLE_OPERATOR_RATE={text!r} is not a rate")
    assert "(e.g. 6000/min" in str(raised.value)
