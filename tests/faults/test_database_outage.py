"""PostgreSQL stops while Nucleus runs (pg_ctl stop -m fast on the throwaway cluster).

While it is down, every API request, read or write, gets a 503 problem `database_unavailable` with
Retry-After (never a 500, never a traceback) and writes nothing; a write in flight when it stops gets
the same 503 and leaves nothing behind; /healthz stays 200 and /readyz is 503 naming the database.
When PostgreSQL is back, the same gunicorn, not restarted, serves every request again within a few
retries: its stale persistent connections are health-checked and replaced (CONN_HEALTH_CHECKS).
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.support import (
    blocked_writer,
    create_collection,
    receive,
    unique,
    wait_until,
    writes_blocked,
)

# One throwaway cluster for the fault suite: under pytest-xdist (--dist loadgroup) it runs on one worker.
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("faults")]

RECOVERY_ROUNDS = 5  # rounds of every request after PostgreSQL is back, until one round fully succeeds
CONCURRENCY = 8  # more than the worker's 4 threads, so that every thread's connection is exercised
SESSION_COOKIE = "sessionid=" + "s" * 32  # well-formed, so the admin looks it up in the database


def reads(records: str, stream: str) -> list[tuple]:
    base = f"/api/v1/collections/{records}"
    return [
        ("GET", "/api/v1/collections/", None),
        ("GET", f"{base}/", None),
        ("GET", f"{base}/records/?limit=10", None),
        ("GET", f"{base}/records/r1/", None),
        ("GET", f"{base}/records/r1/history/", None),
        ("GET", f"/api/v1/collections/{stream}/events/?after=0", None),
    ]


def writes(records: str, stream: str, tag: str) -> list[tuple]:
    """One write of each kind; tag keeps the keys of each round apart."""
    base = f"/api/v1/collections/{records}"
    data = {"tag": tag, "text": "x" * 200}
    return [
        ("POST", f"{base}/records/", {"key": f"{tag}-created", "data": data}),
        ("PUT", f"{base}/records/{tag}-put/", {"data": data}),
        ("PATCH", f"{base}/records/r1/", {"data": {tag: True}}),
        (
            "POST",
            f"{base}/records/bulk/",
            {"mode": "upsert", "records": [{"key": f"{tag}-bulk-{n}", "data": data} for n in range(5)]},
        ),
        (
            "POST",
            "/api/v1/transactions/",
            {
                "operations": [
                    {"op": "create", "collection": records, "key": f"{tag}-tx", "data": data},
                    {"op": "append", "collection": stream, "events": [{"type": "tx", "data": data}]},
                ]
            },
        ),
        ("POST", f"/api/v1/collections/{stream}/events/", {"events": [{"type": "direct", "data": data}]}),
    ]


def call_all(api, calls: list[tuple]) -> list:
    """Every call at once from CONCURRENCY threads; (call, reply) pairs in the order of calls."""
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        replies = list(pool.map(lambda call: api.call(*call), calls))
    return list(zip(calls, replies, strict=True))


def assert_unavailable(call, reply) -> None:
    """A 503 problem database_unavailable with Retry-After: not a 500, no internals."""
    assert reply is not None, f"{call[0]} {call[1]}: the connection closed without a response"
    assert reply.status == 503, f"{call[0]} {call[1]}: {reply}"
    assert reply.header("Content-Type").startswith("application/problem+json"), call
    body = reply.json
    assert (body["status"], body["code"]) == (503, "database_unavailable"), (call, body)
    assert {"type", "title", "detail"} <= set(body), body
    assert int(reply.header("Retry-After")) > 0, call
    assert reply.header("X-Request-ID"), call
    for leak in (b"Traceback", b'File "', b"psycopg", b"OperationalError", b"127.0.0.1"):
        assert leak not in reply.body, (call, reply.body)


def assert_database_down(server, api, records: str, stream: str, idempotent: tuple, key: str) -> None:
    during = reads(records, stream) + writes(records, stream, "during")
    during.append(("DELETE", f"/api/v1/collections/{records}/records/r1/", None))
    for call, reply in call_all(api, during * 2):
        assert_unavailable(call, reply)
    assert_unavailable(idempotent, api.call(*idempotent, Idempotency_Key=key))

    response, body = server.get("/healthz")
    assert response.status == 200, body
    response, body = server.get("/readyz")
    assert response.status == 503, body
    assert response.getheader("Content-Type").startswith("application/problem+json")
    ready = json.loads(body)
    assert (ready["code"], ready["checks"]["database"]) == ("database_unreachable", "failed"), ready
    # Outside DRF, Django's handler500 answers: the admin of a signed-in operator.
    response, body = server.get("/admin/", Cookie=SESSION_COOKIE)
    assert response.status == 503, body[:300]
    assert int(response.getheader("Retry-After")) > 0
    assert b"Traceback" not in body


def wait_for_recovery(api, records: str, stream: str, idempotent: tuple, key: str) -> list:
    """Rounds of every request until one fully succeeds; the idempotent POST's replies in order."""
    idempotent_replies = []
    for attempt in range(1, RECOVERY_ROUNDS + 1):
        replies = call_all(api, reads(records, stream) + writes(records, stream, f"after{attempt}"))
        replies.append((idempotent, api.call(*idempotent, Idempotency_Key=key)))
        idempotent_replies.append(replies[-1][1])
        failed = [(call, reply) for call, reply in replies if reply.status >= 300]
        for call, reply in failed:
            assert_unavailable(call, reply)  # while recovering: 503, never a 500
        if not failed:
            return idempotent_replies
        time.sleep(0.2)
    pytest.fail(f"requests still failed after {RECOVERY_ROUNDS} rounds: {failed[:3]}")


def test_outage_gets_503_and_service_resumes_without_a_restart(server, api, pg, pg_url, pg_cluster):
    records, stream = unique("outage"), unique("outage-events")
    create_collection(api, records)
    create_collection(api, stream, kind="stream")
    base = f"/api/v1/collections/{records}/records"
    assert api.call("PUT", f"{base}/r1/", {"data": {"n": 1}}).status == 201
    idempotent, key = ("POST", f"{base}/", {"key": "once", "data": {"n": 1}}), unique("outage-key")
    # Every thread of the worker holds a persistent connection that the outage will break.
    warm = call_all(api, reads(records, stream) * 2)
    assert all(reply.status == 200 for _, reply in warm), warm

    in_flight_body = {"mode": "upsert", "records": [{"key": f"in-flight-{n}", "data": {}} for n in range(50)]}
    try:
        # A bulk write is inside its transaction, queued on a lock, when PostgreSQL stops.
        with writes_blocked(pg_url, "reversion_version"):
            in_flight = api.send("POST", f"{base}/bulk/", in_flight_body)
            wait_until(lambda: blocked_writer(pg, "reversion_version"), what="the bulk write to queue")
            pg_cluster.stop("fast")
        assert_unavailable(("POST", "the bulk write in flight"), receive(in_flight))
        assert_database_down(server, api, records, stream, idempotent, key)
    finally:
        if not pg_cluster.running:
            pg_cluster.start()

    idempotent_replies = wait_for_recovery(api, records, stream, idempotent, key)
    for call, reply in call_all(api, reads(records, stream) + writes(records, stream, "final")):
        assert reply.status < 300, f"{call[0]} {call[1]}: {reply}"
    response, body = server.get("/readyz")
    assert response.status == 200, body
    response, _ = server.get("/admin/", Cookie=SESSION_COOKIE)
    assert response.status == 302

    # Nothing sent during the outage was written, and r1 survived the DELETE that got a 503.
    assert api.call("GET", f"{base}/r1/").status == 200
    for prefix in ("in-flight-", "during-"):
        assert api.call("GET", f"{base}/?key_prefix={prefix}").json["results"] == [], prefix
    # A 503 is not remembered under its Idempotency-Key: the first success ran the request,
    # every later retry replays it.
    first, *later = [reply for reply in idempotent_replies if reply.status < 300]
    later.append(api.call(*idempotent, Idempotency_Key=key))
    assert (first.status, first.header("Idempotent-Replayed")) == (201, None), first
    assert [(reply.status, reply.header("Idempotent-Replayed")) for reply in later] == [(201, "true")] * len(
        later
    )


def test_postgresql_restart_between_requests_is_invisible_to_clients(server, api, pg_cluster):
    """Connections the worker kept open across a restart are checked before use, not failed on."""
    records, stream = unique("restart"), unique("restart-events")
    create_collection(api, records)
    create_collection(api, stream, kind="stream")
    assert api.call("PUT", f"/api/v1/collections/{records}/records/r1/", {"data": {"n": 1}}).status == 201
    warm = call_all(api, reads(records, stream) * 2)
    assert all(reply.status == 200 for _, reply in warm), warm

    try:
        pg_cluster.stop("fast")
    finally:
        pg_cluster.start()

    for call, reply in call_all(api, reads(records, stream) + writes(records, stream, "after")):
        assert reply.status < 300, f"{call[0]} {call[1]}: {reply}"
