"""Concurrent appenders on the embedded SQLite database, through a real multi-process server.

SQLite runs in WAL mode with IMMEDIATE transactions, so appenders queue on the database's write lock
instead of failing; this test shows that offsets stay gapless and in each producer's order there too.
It uses a SQLite file of its own, whatever database the rest of the suite runs on.
"""

import http.client
import json
import random
import sqlite3
import threading

import pytest

from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command, manage

PRODUCERS = 5
REQUESTS_PER_PRODUCER = 12


@pytest.fixture
def server(tmp_path):
    database = tmp_path / "nucleus.sqlite3"
    env = clean_env(DATABASE_URL=f"sqlite:///{database}", DEBUG="true", NUCLEUS_THROTTLE_RATE="off")
    assert manage("migrate", "--noinput", env=env).returncode == 0
    created = manage("create_service", "producer", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    with Gunicorn(
        gunicorn_command(port, "--workers", "2", "--threads", "4"),
        port=port,
        env=env,
        log_path=tmp_path / "log",
    ) as gunicorn:
        yield gunicorn, token, database


def _request(port: int, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.slow
def test_concurrent_appenders_on_sqlite_get_gapless_offsets_in_their_own_order(server):
    gunicorn, token, database = server
    status, body = _request(
        gunicorn.port, "POST", "/api/v1/collections/", token, {"name": "feed", "kind": "stream"}
    )
    assert status == 201, body
    failures: list[str] = []

    def produce(producer: int) -> None:
        rng = random.Random(producer)
        for sequence in range(REQUESTS_PER_PRODUCER):
            if failures:
                return
            events = [
                {"type": "tick", "data": {"producer": producer, "sequence": sequence, "part": part}}
                for part in range(rng.randint(1, 5))
            ]
            status, body = _request(
                gunicorn.port, "POST", "/api/v1/collections/feed/events/", token, {"events": events}
            )
            if status != 201:
                failures.append(f"producer {producer}: {status} {body}")

    threads = [threading.Thread(target=produce, args=(producer,)) for producer in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "an appender hung"
    assert not failures, [*failures, gunicorn.log_tail()]

    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT e.offset, e.data FROM core_event e JOIN core_collection c ON c.id = e.stream_id "
            "WHERE c.name = 'feed' ORDER BY e.offset"
        ).fetchall()
        last_offset = db.execute("SELECT last_offset FROM core_collection WHERE name = 'feed'").fetchone()[0]
    offsets = [offset for offset, _ in rows]
    assert offsets == list(range(1, len(rows) + 1)), "offsets have a gap or a duplicate"
    assert last_offset == len(rows)
    for producer in range(PRODUCERS):
        mine = [
            (data["sequence"], data["part"])
            for data in (json.loads(d) for _, d in rows)
            if data["producer"] == producer
        ]
        assert mine == sorted(mine), f"producer {producer}'s events are out of order"
        assert {sequence for sequence, _ in mine} == set(range(REQUESTS_PER_PRODUCER))
