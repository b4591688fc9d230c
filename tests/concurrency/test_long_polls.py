"""Long-polls cannot starve the server: the image's server, with the image's settings (2 workers,
4 request threads each), holds 200 waiting long-polls while /healthz and point reads stay fast, with
at most one LISTEN connection per process; one append then wakes every waiter.

Takes about 30 s: the long-polls wait up to 20 s and the latency probes run while they hang. Every
request has a timeout and every loop a deadline, so the test always ends.
"""

import http.client
import json
import re
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from core import services
from core.models import Service
from tests.actors import TEST_ACTOR
from tests.concurrency.test_concurrency import database_url
from tests.core.records_support import record_url
from tests.core.streams_support import events_url, make_stream
from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

IMAGE_WORKERS, IMAGE_THREADS = 2, 4  # gunicorn.conf.py's defaults, which the server below keeps
LONG_POLLS = 200
READERS = 4  # services sharing the long-polls, each well within its share of a process' waiters
WAIT = 20  # seconds each long-poll may wait
PROBES = 200  # of /healthz and of a point read, each, while the long-polls wait
P99_LIMIT = 0.100  # seconds
APPLICATION_NAME = "nucleus-long-polls"  # the server's connections, as pg_stat_activity shows them
METRICS_TOKEN = secrets.token_urlsafe(32)
SETTLE_TIMEOUT = 30  # seconds for the long-polls to be waiting, or their waiters to be gone


@pytest.fixture
def server(tmp_path):
    """The image's gunicorn command with the image's worker and thread counts, DEBUG off."""
    assert connection.vendor == "postgresql"
    port = free_port()
    env = clean_env(
        DJANGO_SETTINGS_MODULE="nucleus_project.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"{database_url()}?application_name={APPLICATION_NAME}",
        NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"),
        STATIC_ROOT=str(tmp_path / "static"),
        NUCLEUS_METRICS_TOKEN=METRICS_TOKEN,
        LOG_LEVEL="WARNING",
    )
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as gunicorn:
        yield gunicorn
        gunicorn.kill()  # the long-polls have answered; a graceful stop would only take longer


def service_with_token(name: str) -> tuple[Service, str]:
    service, _ = services.service_ensure(actor=TEST_ACTOR, name=name, description=f"the {name} service")
    return service, services.token_issue(actor=TEST_ACTOR, service=service, label="tests")[1]


def request(port: int, path: str, token: str, method: str = "GET", body=None, timeout: float = 10):
    """One request on a new connection: (status, parsed JSON body, seconds it took)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, json.loads(raw) if raw else None, time.monotonic() - started


def waiting_long_polls(server: Gunicorn) -> int:
    """nucleus_long_polls_waiting from /metrics: the waiters of all worker processes."""
    response, body = server.get("/metrics", Authorization=f"Bearer {METRICS_TOKEN}")
    assert response.status == 200, body[:300]
    found = re.search(rb"^nucleus_long_polls_waiting (\S+)$", body, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def until_waiting(server: Gunicorn, count: int) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while (waiting := waiting_long_polls(server)) != count:
        assert time.monotonic() < deadline, f"{waiting} long-polls waiting, not {count}"
        time.sleep(0.1)


def server_backends() -> list[tuple[str, str]]:
    """(state, query) of every connection the server holds to the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            [APPLICATION_NAME],
        )
        return cursor.fetchall()


def worker_threads(server: Gunicorn) -> list[int]:
    """The number of threads of each worker process (from /proc)."""
    master = server.process.pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [len(list(Path(f"/proc/{pid}/task").iterdir())) for pid in workers]


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_200_long_polls_leave_healthz_and_point_reads_fast_and_one_append_wakes_them_all(server):
    owner, owner_token = service_with_token("owner")
    readers = [service_with_token(f"reader-{number}") for number in range(READERS)]
    make_stream(owner, "feed", readers=[reader.name for reader, _ in readers])
    items = services.collection_create(actor=TEST_ACTOR, name="items", owner=owner)
    services.record_create(collection=items, key="k1", data={"n": 1}, actor=TEST_ACTOR)
    reader_tokens = [token for _, token in readers]
    wake = {"events": [{"type": "wake", "data": {}}]}
    poll_path = f"{events_url('feed')}?after=0&wait={WAIT}"

    def long_poll(index: int):
        return request(server.port, poll_path, reader_tokens[index % READERS], timeout=WAIT + 15)

    with ThreadPoolExecutor(max_workers=LONG_POLLS) as pool:
        polls = [pool.submit(long_poll, index) for index in range(LONG_POLLS)]
        try:
            until_waiting(server, LONG_POLLS)
            started_waiting = time.monotonic()

            healthz, reads = [], []
            for _ in range(PROBES):
                status, _, seconds = request(server.port, "/healthz", owner_token)
                assert status == 200
                healthz.append(seconds)
                status, body, seconds = request(server.port, record_url("k1", "items"), owner_token)
                assert (status, body["data"]) == (200, {"n": 1})
                reads.append(seconds)
            backends = server_backends()
            threads = worker_threads(server)
            assert time.monotonic() - started_waiting < WAIT - 2, "the probes took too long to prove anything"
            assert not any(poll.done() for poll in polls), "a long-poll answered before anything was appended"

            status, appended, _ = request(server.port, events_url("feed"), owner_token, "POST", wake)
            assert status == 201, appended
            woken_at = time.monotonic()
            done, _ = wait(polls, timeout=WAIT + 20)
        finally:
            for poll in polls:
                poll.cancel()
    answers = [poll.result() for poll in done]
    answered_within = time.monotonic() - woken_at

    assert p99(healthz) < P99_LIMIT, f"/healthz p99 {p99(healthz) * 1000:.1f} ms"
    assert p99(reads) < P99_LIMIT, f"point read p99 {p99(reads) * 1000:.1f} ms"
    listening = [query for _, query in backends if query.startswith("LISTEN")]
    assert 1 <= len(listening) <= IMAGE_WORKERS, backends
    # Request threads' persistent connections plus one listener per worker; none per long-poll.
    assert len(backends) <= IMAGE_WORKERS * (IMAGE_THREADS + 1), backends
    # The event loop, the request threads, the listener and a few of the runtime's: none per long-poll.
    assert len(threads) == IMAGE_WORKERS and max(threads) <= IMAGE_THREADS + 8, threads
    assert len(answers) == LONG_POLLS, f"{LONG_POLLS - len(answers)} long-polls did not answer"
    assert answered_within < WAIT / 2, f"the last long-poll answered {answered_within:.1f} s after the append"
    for status, body, seconds in answers:
        assert status == 200, body
        assert [event["type"] for event in body["results"]] == ["wake"]
        assert (body["last_offset"], body["next_after"]) == (1, 1)
        assert seconds < WAIT, "a long-poll waited out its time instead of being woken"
    until_waiting(server, 0)


def test_long_polls_whose_clients_go_away_or_time_out_leave_no_waiter_behind(server):
    owner, token = service_with_token("owner")
    make_stream(owner, "feed")
    request_line = (
        f"GET {events_url('feed')}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nX-Forwarded-Proto: https\r\n\r\n"
    ).encode()
    abandoned = []
    try:
        for _ in range(20):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            client.sendall(request_line)
            abandoned.append(client)
        until_waiting(server, 20)
    finally:
        for client in abandoned:
            client.close()
    until_waiting(server, 0)  # each wait was cancelled when its client went away, long before 30 s

    status, body, seconds = request(server.port, f"{events_url('feed')}?wait=1", token)
    assert (status, body) == (200, {"results": [], "last_offset": 0, "next_after": 0})
    assert 0.9 <= seconds < 5
    assert waiting_long_polls(server) == 0


def test_a_stopping_server_answers_its_waiting_long_polls_at_once(server):
    owner, token = service_with_token("owner")
    make_stream(owner, "feed")
    with ThreadPoolExecutor(max_workers=5) as pool:
        polls = [
            pool.submit(request, server.port, f"{events_url('feed')}?wait=30", token, timeout=40)
            for _ in range(5)
        ]
        until_waiting(server, 5)
        stopping = time.monotonic()
        server.stop()  # SIGTERM, as a deploy sends it
        answers = [poll.result(timeout=40) for poll in polls]

    assert time.monotonic() - stopping < 10, "the shutdown waited for the long-polls' 30 s"
    for status, body, seconds in answers:
        assert (status, body) == (200, {"results": [], "last_offset": 0, "next_after": 0})
        assert seconds < 20


def test_a_client_that_leaves_during_the_first_read_leaves_no_waiter_behind(server):
    owner, token = service_with_token("owner")
    make_stream(owner, "feed")
    request_line = (
        f"GET {events_url('feed')}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nX-Forwarded-Proto: https\r\n\r\n"
    ).encode()
    # The long-poll's first look queues on this lock, on a request thread, when its client leaves.
    blocker = psycopg.connect(database_url(), connect_timeout=5)
    try:
        blocker.execute("LOCK TABLE core_collection IN ACCESS EXCLUSIVE MODE")
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(request_line)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not any(state == "active" and "core_collection" in query for state, query in server_backends()):
            assert time.monotonic() < deadline, "the long-poll never queued on the lock"
            time.sleep(0.05)
        client.close()
        time.sleep(0.5)  # the server sees the client go
    finally:
        blocker.rollback()
        blocker.close()

    time.sleep(1)  # the first look ends, subscribed, after its client has gone
    assert waiting_long_polls(server) == 0
