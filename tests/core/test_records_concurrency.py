"""Concurrent read-modify-write through a real HTTP server: If-Match loses no update."""

import json
import threading
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest
from reversion.models import Version

from core import services
from core.models import Record
from core.principals import Actor
from tests.actors import TEST_ACTOR
from tests.core.records_support import record_url

THREADS = 8
INCREMENTS = 10
MAX_ATTEMPTS = 400  # per thread; far above what 8 contending threads need, but bounded


def call(address, method: str, path: str, headers: dict, body: dict | None = None) -> tuple[int, dict, dict]:
    """One request on a fresh connection: a kept-alive one pays Nagle's delay on every response."""
    connection = HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def increment(base_url: str, token: str, path: str, outcome: dict) -> None:
    """Add 1 to data.n INCREMENTS times: GET, PUT with If-Match, again on 412."""
    address = urlsplit(base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for _ in range(MAX_ATTEMPTS):
            if outcome["done"] == INCREMENTS:
                return
            status, got_headers, record = call(address, "GET", path, headers)
            if status != 200:
                outcome["errors"].append(("GET", status, record))
                return
            put_headers = {**headers, "If-Match": got_headers["ETag"]}
            status, _, answer = call(
                address, "PUT", path, put_headers, {"data": {"n": record["data"]["n"] + 1}}
            )
            if status == 200:
                outcome["done"] += 1
                outcome["versions"].append(answer["version"])
            elif status == 412:
                outcome["conflicts"] += 1
            else:
                outcome["errors"].append(("PUT", status, answer))
                return
    except Exception as exc:  # reported below, so that a failing thread fails the test
        outcome["errors"].append(("exception", repr(exc)))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_if_match_writers_lose_no_update(live_server, owner):
    collection = services.collection_create(actor=TEST_ACTOR, name="counters", owner=owner.service)
    services.record_create(collection=collection, key="c", data={"n": 0}, actor=Actor(label="service:owner"))
    outcomes = [{"done": 0, "conflicts": 0, "versions": [], "errors": []} for _ in range(THREADS)]
    threads = [
        threading.Thread(
            target=increment, args=(live_server.url, owner.token, record_url("c", "counters"), outcome)
        )
        for outcome in outcomes
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads), "a writer did not finish in time"
    assert [o["errors"] for o in outcomes] == [[]] * THREADS
    assert [o["done"] for o in outcomes] == [INCREMENTS] * THREADS
    total = THREADS * INCREMENTS
    record = Record.objects.get(collection=collection, key="c")
    assert record.data == {"n": total}
    assert record.version == total + 1
    versions = sorted(v for o in outcomes for v in o["versions"])
    assert versions == list(range(2, total + 2))  # every successful write got its own version
    history = Version.objects.get_for_object(record)
    assert history.count() == total + 1
    numbers = sorted(json.loads(v.serialized_data)[0]["fields"]["data"]["n"] for v in history)
    assert numbers == list(range(total + 1))
