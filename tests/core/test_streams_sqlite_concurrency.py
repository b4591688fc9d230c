"""Concurrent appenders on the embedded SQLite database, through a real multi-process server.

SQLite runs in WAL mode with IMMEDIATE transactions, so appenders queue on the database's write lock
instead of failing; this test shows that offsets stay gapless and in each producer's order there too.
It uses a SQLite file of its own, whatever database the rest of the suite runs on.
"""

import http.client
import json
import random
import socket
import sqlite3
import threading
import time

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


def test_a_long_poll_on_sqlite_waits_without_a_thread_and_wakes_on_an_append(server):
    """SQLite has no LISTEN: the worker's watcher reads the watched streams' offsets every 100 ms."""
    gunicorn, token, _ = server
    created = {"name": "ticks", "kind": "stream"}
    status, body = _request(gunicorn.port, "POST", "/api/v1/collections/", token, created)
    assert status == 201, body
    path = "/api/v1/collections/ticks/events/"
    answers: list = []

    def long_poll() -> None:
        answers.append(_request(gunicorn.port, "GET", f"{path}?wait=15", token))

    # More long-polls than the server has request threads (2 workers x 4): they wait without one.
    polls = [threading.Thread(target=long_poll) for _ in range(12)]
    for poll in polls:
        poll.start()
    time.sleep(1)
    assert not answers, "a long-poll answered before anything was appended"
    status, body = _request(gunicorn.port, "GET", path, token)  # a request thread is free meanwhile
    assert (status, body["results"]) == (200, [])

    status, body = _request(gunicorn.port, "POST", path, token, {"events": [{"type": "tick", "data": {}}]})
    assert status == 201, body
    appended = time.monotonic()
    for poll in polls:
        poll.join(timeout=20)

    assert time.monotonic() - appended < 5
    assert len(answers) == 12
    assert all(status == 200 and [e["type"] for e in body["results"]] == ["tick"] for status, body in answers)


def test_head_long_polls_take_no_request_thread_either(server):
    gunicorn, token, _ = server
    created = {"name": "heads", "kind": "stream"}
    status, body = _request(gunicorn.port, "POST", "/api/v1/collections/", token, created)
    assert status == 201, body
    waiting = []
    for _ in range(12):  # more than the 2 x 4 request threads
        client = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
        client.request(
            "HEAD", "/api/v1/collections/heads/events/?wait=10", headers={"Authorization": f"Bearer {token}"}
        )
        waiting.append(client)
    try:
        time.sleep(1)
        started = time.monotonic()
        status, _ = _request(gunicorn.port, "GET", "/healthz", token)
        assert status == 200
        assert time.monotonic() - started < 2, "the HEAD long-polls held the request threads"
    finally:
        for client in waiting:
            client.close()


def _held_threads_check(gunicorn, token: str, send) -> None:
    """/healthz answers at once while 24 requests sent by send(client) are in flight (3 x 2 x 4 threads)."""
    waiting = []
    for _ in range(24):
        client = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
        send(client)
        waiting.append(client)
    try:
        time.sleep(1)
        started = time.monotonic()
        status, _ = _request(gunicorn.port, "GET", "/healthz", token)
        assert status == 200
        assert time.monotonic() - started < 2, "the long-polls held the request threads"
    finally:
        for client in waiting:
            client.close()


def test_a_long_poll_whose_wait_is_percent_encoded_takes_no_request_thread(server):
    gunicorn, token, _ = server
    status, body = _request(
        gunicorn.port, "POST", "/api/v1/collections/", token, {"name": "enc", "kind": "stream"}
    )
    assert status == 201, body
    path = "/api/v1/collections/enc/events/?wai%74=10"  # Django reads the name as "wait"

    _held_threads_check(
        gunicorn,
        token,
        lambda client: client.request("GET", path, headers={"Authorization": f"Bearer {token}"}),
    )


def test_a_long_poll_sent_with_a_body_answers_without_holding_a_thread(server):
    gunicorn, token, _ = server
    status, body = _request(
        gunicorn.port, "POST", "/api/v1/collections/", token, {"name": "bodied", "kind": "stream"}
    )
    assert status == 201, body
    path = "/api/v1/collections/bodied/events/?wait=10"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    _held_threads_check(
        gunicorn, token, lambda client: client.request("GET", path, body=b"{}", headers=headers)
    )

    client = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
    started = time.monotonic()
    client.request("GET", path, body=b"{}", headers=headers)
    response = client.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {"results": [], "last_offset": 0, "next_after": 0}
    assert time.monotonic() - started < 2, "served on a request thread: it does not wait"


def test_a_long_poll_body_over_the_limit_is_refused_before_it_is_read(server):
    gunicorn, token, _ = server
    status, body = _request(
        gunicorn.port, "POST", "/api/v1/collections/", token, {"name": "big", "kind": "stream"}
    )
    assert status == 201, body
    announced = 200 * 1024 * 1024
    head = (
        "GET /api/v1/collections/big/events/?wait=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {announced}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=10) as sock:
        sock.sendall(head + b"x" * (1024 * 1024))  # far less than announced: the answer cannot wait for it
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]

    assert b" 413 " in status_line, status_line


def test_a_long_poll_on_a_stream_truncated_past_after_answers_at_once(server):
    gunicorn, token, database = server
    status, body = _request(
        gunicorn.port, "POST", "/api/v1/collections/", token, {"name": "gone", "kind": "stream"}
    )
    assert status == 201, body
    events = {"events": [{"type": "tick", "data": {}}, {"type": "tick", "data": {}}]}
    status, body = _request(gunicorn.port, "POST", "/api/v1/collections/gone/events/", token, events)
    assert status == 201, body
    env = clean_env(DATABASE_URL=f"sqlite:///{database}")
    truncated = manage("truncate_stream", "gone", "--before", "3", "--force", env=env)
    assert truncated.returncode == 0, truncated.stderr

    started = time.monotonic()
    status, body = _request(gunicorn.port, "GET", "/api/v1/collections/gone/events/?after=0&wait=5", token)

    assert status == 200, body
    assert body == {"results": [], "last_offset": 2, "next_after": 0}
    assert time.monotonic() - started < 2, "nothing will ever come after 0: the answer is now"
