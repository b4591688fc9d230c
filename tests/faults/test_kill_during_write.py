"""SIGKILL of the whole server (gunicorn master and worker) in the middle of a write: after a restart
the write is either fully there or fully absent, never partial; retried with the Idempotency-Key it
was sent with, it ends up written exactly once.

Each write is interrupted at these points:
- body_sent: as soon as the request body has been sent (the server is still reading or parsing it);
- half_a_second: 0.5 s later, wherever the server happens to be;
- blocked: deterministically inside the database transaction, after rows were written. The test holds
  a SHARE lock on a table the write needs late (the history table for a bulk write, the events table
  for a transaction), waits until Nucleus' connection has written other tables and queues on that
  lock, and kills then: that transaction can never commit. Once without an Idempotency-Key (only
  the service's own transaction protects the write), once with one (the retry takes over the claim
  the killed request left behind);
- committed: as soon as the write is visible to another connection (its response may be unsent);
  the retry with the same Idempotency-Key must replay it, not write it again.
"""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.faults.support import (
    blocked_writer,
    collection_id,
    create_collection,
    event_offsets,
    has_answered,
    history_counts,
    receive,
    record_rows,
    tables_written,
    unique,
    wait_for_no_nucleus_backends,
    wait_until,
    writes_blocked,
)

# One throwaway cluster for the fault suite: under pytest-xdist (--dist loadgroup) it runs on one worker.
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("faults")]

KILL_POINTS = [
    pytest.param("body_sent", False, id="body_sent"),
    pytest.param("half_a_second", False, id="half_a_second"),
    pytest.param("blocked", False, id="blocked"),
    pytest.param("blocked", True, id="blocked-retried_with_key"),
    pytest.param("committed", True, id="committed-retried_with_key"),
]
BULK_RECORDS = 1000
TRANSACTION_CREATES = 200
TRANSACTION_EVENTS = 200
RETRIES = 40  # a claim of the killed request may be taken over after 1 s (NUCLEUS_IDEMPOTENCY_STALE_SECONDS)


@dataclass
class Write:
    path: str
    body: dict
    success_status: int
    lock_table: str  # a table the write inserts into late: the blocked point holds a lock on it
    written_before: set[str]  # tables the write has inserted into by the time it queues there
    committed: Callable[[], object]  # truthy once the write is visible
    outcome: Callable[[], str]  # "present" or "absent"; fails on anything in between


def payload(index: int, size: int) -> dict:
    """Record data of about `size` bytes, nested a little so that validation has work to do."""
    return {
        "index": index,
        "text": f"record {index} " + "x" * size,
        "items": [{"n": n, "label": f"item-{n}", "ok": n % 2 == 0} for n in range(20)],
    }


def records_outcome(pg, collection: int, keys: list[str]) -> str:
    """'present': every key has a record at version 1 with exactly one history version.
    'absent': no record and no history at all. Anything in between fails."""
    records = record_rows(pg, collection)
    history = history_counts(pg, collection)
    if not records and not history:
        return "absent"
    assert sorted(records) == sorted(keys), f"partial write: {len(records)} of {len(keys)} records"
    assert {version for _, version in records.values()} == {1}, "a record was written twice"
    assert history == {record_id: 1 for record_id, _ in records.values()}, (
        f"history does not match the records: {len(history)} keys with history, {len(records)} records"
    )
    return "present"


def events_outcome(pg, stream: int, count: int) -> str:
    offsets, last_offset = event_offsets(pg, stream)
    if not offsets and last_offset == 0:
        return "absent"
    assert offsets == list(range(1, count + 1)), f"partial append: {len(offsets)} of {count} events"
    assert last_offset == count
    return "present"


def interrupt(kill_at: str, write: Write, *, key: str | None, server, api, pg, pg_url) -> set[str]:
    """Send the write, SIGKILL the server at kill_at, and wait until its database sessions ended.

    Returns the tables the killed transaction had written to (known at the blocked point only).
    """
    written: set[str] = set()
    blocker = writes_blocked(pg_url, write.lock_table) if kill_at == "blocked" else contextlib.nullcontext()
    with blocker:
        connection = api.send("POST", write.path, write.body, Idempotency_Key=key)

        def reached(condition):
            """condition() while the request is in flight; an answer before it holds is a failure."""
            result = condition()
            if not result and has_answered(connection):
                result = condition()  # it may have committed just before it answered
                if not result:
                    pytest.fail(f"the server answered before the kill point: {receive(connection)}")
            return result

        if kill_at == "half_a_second":
            time.sleep(0.5)
        elif kill_at == "blocked":
            pid = wait_until(
                lambda: reached(lambda: blocked_writer(pg, write.lock_table)),
                what=f"the write to queue on {write.lock_table}",
            )
            written = tables_written(pg, pid)
        elif kill_at == "committed":
            wait_until(lambda: reached(write.committed), what="the write to commit")
        server.kill()
    receive(connection)  # a response sent before the kill changes nothing
    wait_for_no_nucleus_backends(pg)
    return written


def retry_until_done(api, write: Write, key: str):
    """The client's retry after the crash; 409 while the killed request's claim is not yet stale."""
    for _ in range(RETRIES):
        reply = api.call("POST", write.path, write.body, Idempotency_Key=key)
        if not (reply.status == 409 and reply.json.get("code") == "idempotency_in_progress"):
            return reply
        time.sleep(0.1)
    pytest.fail(f"the Idempotency-Key stayed in progress after {RETRIES} retries")


def crash_restart_and_check(kill_at: str, with_key: bool, write: Write, *, server, api, pg, pg_url):
    key = unique("retry") if with_key else None
    written = interrupt(kill_at, write, key=key, server=server, api=api, pg=pg, pg_url=pg_url)
    server.start()

    found = write.outcome()
    if kill_at == "blocked":
        assert found == "absent", "a write killed before it could commit was found committed"
        assert write.written_before <= written, f"killed before it wrote {write.written_before}: {written}"
    elif kill_at == "committed":
        assert found == "present"
    if key is not None:
        reply = retry_until_done(api, write, key)
        assert reply.status == write.success_status, reply
        assert (reply.header("Idempotent-Replayed") == "true") == (found == "present"), reply.headers
        assert write.outcome() == "present"
    return reply.json if key is not None else None


@pytest.mark.parametrize(("kill_at", "with_key"), KILL_POINTS)
def test_bulk_upsert_killed_mid_request_is_all_or_nothing(kill_at, with_key, server, api, pg, pg_url):
    name = unique("bulk")
    create_collection(api, name)
    collection = collection_id(pg, name)
    keys = [f"k{index:04d}" for index in range(BULK_RECORDS)]
    records = [{"key": key, "data": payload(index, 2000)} for index, key in enumerate(keys)]
    write = Write(
        path=f"/api/v1/collections/{name}/records/bulk/",
        body={"mode": "upsert", "records": records},
        success_status=201,
        lock_table="reversion_version",
        written_before={"core_record"},
        committed=lambda: record_rows(pg, collection),
        outcome=lambda: records_outcome(pg, collection, keys),
    )
    result = crash_restart_and_check(kill_at, with_key, write, server=server, api=api, pg=pg, pg_url=pg_url)
    if result is not None:
        assert [item["version"] for item in result["results"]] == [1] * BULK_RECORDS


@pytest.mark.parametrize(("kill_at", "with_key"), KILL_POINTS)
def test_transaction_killed_mid_request_is_all_or_nothing(kill_at, with_key, server, api, pg, pg_url):
    records_name, stream_name = unique("tx-records"), unique("tx-events")
    create_collection(api, records_name)
    create_collection(api, stream_name, kind="stream")
    records, stream = collection_id(pg, records_name), collection_id(pg, stream_name)
    keys = [f"k{index:04d}" for index in range(TRANSACTION_CREATES)]
    operations = [
        {"op": "create", "collection": records_name, "key": key, "data": payload(index, 500)}
        for index, key in enumerate(keys)
    ]
    events = [{"type": "item.created", "data": {"n": n}} for n in range(TRANSACTION_EVENTS)]
    operations.append({"op": "append", "collection": stream_name, "events": events})

    def outcome() -> str:
        found = records_outcome(pg, records, keys), events_outcome(pg, stream, TRANSACTION_EVENTS)
        assert found[0] == found[1], f"records {found[0]}, but events {found[1]}"
        return found[0]

    write = Write(
        path="/api/v1/transactions/",
        body={"operations": operations},
        success_status=200,
        lock_table="core_event",
        written_before={"core_record", "reversion_version"},
        committed=lambda: record_rows(pg, records) or event_offsets(pg, stream)[0],
        outcome=outcome,
    )
    result = crash_restart_and_check(kill_at, with_key, write, server=server, api=api, pg=pg, pg_url=pg_url)
    if result is not None:
        assert result["results"][-1]["last_offset"] == TRANSACTION_EVENTS
