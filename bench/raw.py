"""The raw baselines: the same work as each Nucleus figure, as plain psycopg on equivalent tables.

Each function is one client (see bench.clients); writes go to the copies of Nucleus' tables in the
bench_raw schema, reads read Nucleus' own tables (the same rows and indexes the API reads). JSON is
encoded before the timed loop on both sides and parsed by PostgreSQL (`::jsonb`) as Nucleus' server
parses request bodies.
"""

import json
import random
import time
from collections.abc import Callable

import psycopg

from bench.clients import ClientResult
from bench.db import RAW_SCHEMA
from bench.workload import event_data, event_id, record_data, record_id, record_key

ACTOR = "service:bench-raw"
RECORD_COLUMNS = (
    "id, collection_id, key, data, version, schema_version, created_at, updated_at, created_by, updated_by"
)

INSERT_RECORD = f"""
    INSERT INTO {RAW_SCHEMA}.record
        (id, collection_id, key, data, version, schema_version, deleted,
         created_at, updated_at, created_by, updated_by)
    VALUES (%s, %s, %s, %s::jsonb, 1, 1, false, now(), now(), %s, %s)
"""  # noqa: S608 (a constant schema name)
UPDATE_RECORD = f"""
    UPDATE {RAW_SCHEMA}.record
    SET data = %s::jsonb, version = version + 1, updated_at = now(), updated_by = %s
    WHERE collection_id = %s AND key = %s AND version = %s
"""  # noqa: S608
POINT_READ = f"SELECT {RECORD_COLUMNS} FROM core_record WHERE collection_id = %s AND key = %s"  # noqa: S608
WHERE_READ = (
    f"SELECT {RECORD_COLUMNS} FROM core_record WHERE collection_id = %s AND data @> %s::jsonb "  # noqa: S608
    "ORDER BY key LIMIT %s"
)
PAGE_FIRST = f"SELECT {RECORD_COLUMNS} FROM core_record WHERE collection_id = %s ORDER BY key LIMIT %s"  # noqa: S608
PAGE_NEXT = (
    f"SELECT {RECORD_COLUMNS} FROM core_record WHERE collection_id = %s AND key > %s "  # noqa: S608
    "ORDER BY key LIMIT %s"
)
LOCK_HEAD = f"SELECT last_offset FROM {RAW_SCHEMA}.collection WHERE id = %s FOR UPDATE"  # noqa: S608
INSERT_EVENT = f"""
    INSERT INTO {RAW_SCHEMA}.event (stream_id, "offset", event_id, type, data, producer, created_at)
    VALUES (%s, %s, %s, %s, %s::jsonb, %s, now())
"""  # noqa: S608
MOVE_HEAD = f"UPDATE {RAW_SCHEMA}.collection SET last_offset = %s WHERE id = %s"  # noqa: S608
EVENTS_PAGE = (
    'SELECT id, "offset", event_id, type, data, producer, created_at FROM core_event '
    'WHERE stream_id = %s AND "offset" > %s ORDER BY "offset" LIMIT %s'
)


def _dump(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"))


def _timed(result: ClientResult, operation: Callable[[], int]) -> None:
    began = time.perf_counter()
    result.items += operation()
    result.latencies.append(time.perf_counter() - began)
    result.ops += 1


def bulk_insert(index: int, args: dict, start) -> ClientResult:
    """executemany INSERT, one transaction per batch."""
    cid, first, count, batch = args["collection_id"], args["first"], args["count"], args["batch"]
    batches = []
    for begin in range(first, first + count, batch):
        rows = []
        for i in range(begin, min(begin + batch, first + count)):
            key = record_key(i)
            rows.append((record_id(cid, key), cid, key, _dump(record_data(i)), ACTOR, ACTOR))
        batches.append(rows)
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:

        def insert(rows):
            with conn.transaction():
                cursor.executemany(INSERT_RECORD, rows)
            return len(rows)

        result.started = start()
        for rows in batches:
            _timed(result, lambda rows=rows: insert(rows))
        result.finished = time.perf_counter()
    return result


def single_creates(index: int, args: dict, start) -> ClientResult:
    """BEGIN; INSERT one record; COMMIT, per record."""
    cid = args["collection_id"]
    rows = []
    for i in args["numbers"]:
        key = record_key(i)
        rows.append((record_id(cid, key), cid, key, _dump(record_data(i)), ACTOR, ACTOR))
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:

        def insert(row):
            with conn.transaction():
                cursor.execute(INSERT_RECORD, row)
            return 1

        result.started = start()
        for row in rows:
            _timed(result, lambda row=row: insert(row))
        result.finished = time.perf_counter()
    return result


def single_updates(index: int, args: dict, start) -> ClientResult:
    """BEGIN; UPDATE one record where its version is the one read (optimistic, as If-Match); COMMIT."""
    cid = args["collection_id"]
    rows = [(_dump(record_data(i, revision=1)), ACTOR, cid, record_key(i), 1) for i in args["numbers"]]
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:

        def update(row):
            with conn.transaction():
                cursor.execute(UPDATE_RECORD, row)
                if cursor.rowcount != 1:
                    raise RuntimeError(f"raw update of {row[3]} matched {cursor.rowcount} rows")
            return 1

        result.started = start()
        for row in rows:
            _timed(result, lambda row=row: update(row))
        result.finished = time.perf_counter()
    return result


def point_reads(index: int, args: dict, start) -> ClientResult:
    """SELECT one record by (collection, key), autocommit, prepared."""
    cid, population, count = args["collection_id"], args["population"], args["count"]
    rng = random.Random(f"point:{index}:{args.get('seed', 0)}")
    keys = [record_key(rng.randrange(population)) for _ in range(count)]
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:

        def read(key):
            cursor.execute(POINT_READ, (cid, key), prepare=True)
            if cursor.fetchone() is None:
                raise RuntimeError(f"raw point read found no {key}")
            return 1

        result.started = start()
        for key in keys:
            _timed(result, lambda key=key: read(key))
        result.finished = time.perf_counter()
    return result


def where_reads(index: int, args: dict, start) -> ClientResult:
    """The containment query Nucleus runs for `where` (same ORDER BY and LIMIT: a page plus one)."""
    cid, filters, limit = args["collection_id"], args["filters"], args["limit"]
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:

        def read(where):
            # Not prepared: a generic plan cannot see how selective the filter is and may walk the
            # key index instead of the GIN index. Planned per query, as Nucleus' queries are.
            cursor.execute(WHERE_READ, (cid, where, limit + 1), prepare=False)
            return len(cursor.fetchall()[:limit])

        encoded = [_dump(where) for where in filters]
        result.started = start()
        for where in encoded:
            _timed(result, lambda where=where: read(where))
        result.finished = time.perf_counter()
    return result


def list_pages(index: int, args: dict, start) -> ClientResult:
    """The whole collection in key order, keyset pages of `limit` (a page plus one row, as Nucleus)."""
    cid, limit = args["collection_id"], args["limit"]
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:
        last = [None]

        def page():
            if last[0] is None:
                cursor.execute(PAGE_FIRST, (cid, limit + 1), prepare=True)
            else:
                cursor.execute(PAGE_NEXT, (cid, last[0], limit + 1), prepare=True)
            rows = cursor.fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            last[0] = rows[-1][2] if rows and more else None
            return len(rows)

        result.started = start()
        while True:
            _timed(result, page)
            if last[0] is None:
                break
        result.finished = time.perf_counter()
    return result


def appends(index: int, args: dict, start) -> ClientResult:
    """BEGIN; lock the stream's head row; INSERT the events (executemany); move the head; COMMIT."""
    sid, batch, batches = args["stream_id"], args["batch"], args["batches"]
    producer = args.get("producer", index)
    prepared = []
    n = args.get("first", 0)  # the producer's next event number: rounds continue where the last stopped
    for _ in range(batches):
        events = []
        for _ in range(batch):
            events.append((event_id("raw", producer, n), "item.classified", _dump(event_data(producer, n))))
            n += 1
        prepared.append(events)
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:

        def append(events):
            with conn.transaction():
                (last,) = cursor.execute(LOCK_HEAD, (sid,), prepare=True).fetchone()
                rows = [
                    (sid, last + offset, eid, kind, data, ACTOR)
                    for offset, (eid, kind, data) in enumerate(events, start=1)
                ]
                if len(rows) == 1:
                    cursor.execute(INSERT_EVENT, rows[0], prepare=True)
                else:
                    cursor.executemany(INSERT_EVENT, rows)
                cursor.execute(MOVE_HEAD, (last + len(rows), sid), prepare=True)
            return len(rows)

        result.started = start()
        for events in prepared:
            _timed(result, lambda events=events: append(events))
        result.finished = time.perf_counter()
    return result


def read_stream(index: int, args: dict, start) -> ClientResult:
    """A stream from its start to its end, keyset pages of `limit` by offset."""
    sid, limit = args["stream_id"], args["limit"]
    result = ClientResult()
    with psycopg.connect(args["url"], autocommit=True) as conn, conn.cursor() as cursor:
        after = [0]

        def page():
            rows = cursor.execute(EVENTS_PAGE, (sid, after[0], limit), prepare=True).fetchall()
            if rows:
                after[0] = rows[-1][1]
            return len(rows)

        result.started = start()
        while True:
            _timed(result, page)
            if after[0] >= args["last_offset"]:
                break
        result.finished = time.perf_counter()
    return result
