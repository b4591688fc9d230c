"""Long-polls across a PostgreSQL outage: the worker's one LISTEN connection is lost and comes back.

A long-poll waiting when PostgreSQL stops is neither lost nor answered with a 500: once PostgreSQL is
back, the listener reconnects, and the waiting long-poll is woken by the next append. Afterwards the
worker (one, in this suite) still holds exactly one LISTEN connection.
"""

import time

import pytest

from tests.faults.conftest import DATABASE
from tests.faults.support import (
    APPLICATION_NAME,
    create_collection,
    has_answered,
    receive,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("faults")]

WAIT = 30  # seconds the long-polls may wait: far longer than the test takes


def listeners(pg_cluster) -> int:
    """Nucleus' connections that LISTEN, seen on a new connection (the outage ends every older one)."""
    with pg_cluster.connect(DATABASE) as pg:
        return pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            [APPLICATION_NAME],
        ).fetchone()[0]


def append(api, stream: str, event_type: str) -> None:
    reply = api.call(
        "POST", f"/api/v1/collections/{stream}/events/", {"events": [{"type": event_type, "data": {}}]}
    )
    assert reply.status == 201, reply


def test_a_long_poll_waiting_through_an_outage_is_woken_by_the_next_append(server, api, pg_cluster):
    stream = unique("outage-polls")
    create_collection(api, stream, kind="stream")
    append(api, stream, "before")
    polling = api.send("GET", f"/api/v1/collections/{stream}/events/?after=1&wait={WAIT}")
    wait_until(lambda: listeners(pg_cluster) == 1, what="the worker to LISTEN")
    time.sleep(0.3)  # the long-poll has found nothing and waits

    try:
        pg_cluster.stop("fast")
        time.sleep(1)
        assert not has_answered(polling), "the long-poll gave up during the outage"
    finally:
        if not pg_cluster.running:
            pg_cluster.start()
    wait_until(lambda: listeners(pg_cluster) == 1, what="the listener to reconnect", timeout=15)
    appended_at = time.monotonic()
    append(api, stream, "after")

    reply = receive(polling)
    assert reply is not None and reply.status == 200, reply
    assert [event["type"] for event in reply.json["results"]] == ["after"]
    assert time.monotonic() - appended_at < 5, "woken by the append, not by the end of its wait"
    assert listeners(pg_cluster) == 1


def test_after_an_outage_new_long_polls_are_woken_at_once(server, api, pg_cluster):
    stream = unique("restart-polls")
    create_collection(api, stream, kind="stream")
    assert api.call("GET", f"/api/v1/collections/{stream}/events/?wait=0.5").status == 200  # listening
    try:
        pg_cluster.stop("fast")
    finally:
        pg_cluster.start()
    wait_until(lambda: listeners(pg_cluster) == 1, what="the listener to reconnect", timeout=15)

    polling = api.send("GET", f"/api/v1/collections/{stream}/events/?wait={WAIT}")
    time.sleep(0.5)
    assert not has_answered(polling)
    appended_at = time.monotonic()
    append(api, stream, "woken")

    reply = receive(polling)
    assert reply is not None and reply.status == 200, reply
    assert [event["type"] for event in reply.json["results"]] == ["woken"]
    assert time.monotonic() - appended_at < 5
