"""Nucleus under concurrent clients: a real gunicorn server with several workers, on PostgreSQL.

Each test commits its set-up (transaction=True) so that the server, connected to the same test
database, sees it. Many client threads then call the server over HTTP, each request on a new
connection with a timeout and every retry loop bounded by attempts and by a deadline, so a test
always ends. Afterwards the database itself is checked for the guarantee under test. Seeds are fixed:
every run sends the same requests; only their interleaving is up to the server.
"""

import http.client
import itertools
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from urllib.parse import quote

import pytest
from django.db import connection
from django.urls import reverse

from core import services
from core.models import Collection, Event, IdempotencyKey, Record
from tests.actors import TEST_ACTOR
from tests.core.records_support import bulk_url, history_fields, record_url, records_url
from tests.core.streams_support import events_url, make_stream
from tests.processes import Gunicorn, clean_env, free_port, gunicorn_command

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS, THREADS_PER_WORKER = 3, 4
REQUEST_TIMEOUT = 15  # seconds for one request
CLIENTS_TIMEOUT = 120  # seconds for all the clients of one test (they need far less)
MAX_ATTEMPTS = 200  # per logical operation: far above what the contention here needs, but bounded
# Refusals that say "try again": a stale If-Match, a collision the database detected (deadlock,
# concurrent create), an idempotent request still running; and overload.
RETRY = {(412, "precondition_failed"), (409, "concurrent_write"), (409, "idempotency_in_progress")}
OVERLOAD = {429, 503}
BACKOFF = 0.02  # seconds, at most, before retrying a refusal


# --- the server and its clients ----------------------------------------------------------------


def database_url() -> str:
    """The URL of the test database this session created (never the database DATABASE_URL names)."""
    settings = connection.settings_dict
    name = settings["NAME"]
    assert name.startswith("test_"), f"{name!r} is not a test database; refusing to serve it"
    credentials = quote(settings["USER"] or "", safe="")
    if settings["PASSWORD"]:
        credentials += ":" + quote(settings["PASSWORD"], safe="")
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or "5432"
    return f"postgres://{credentials}@{host}:{port}/{quote(name, safe='')}"


@pytest.fixture
def server(tmp_path):
    """The image's gunicorn command, 3 workers x 4 threads, DEBUG off, serving the test database.

    One per test: flushing the database between tests gives Django's content types new ids, which
    the workers of an older server would still have cached.
    """
    assert connection.vendor == "postgresql"
    port = free_port()
    env = clean_env(
        DJANGO_SETTINGS_MODULE="nucleus_project.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url(),
        GUNICORN_WORKERS=str(WORKERS),
        GUNICORN_THREADS=str(THREADS_PER_WORKER),
        NUCLEUS_BACKUP_DIR=str(tmp_path / "backups"),
        STATIC_ROOT=str(tmp_path / "static"),
        LOG_LEVEL="WARNING",
        # Thousands of requests of one service in seconds: the production rate limit would turn
        # them into 429s, and limiting is not what these tests are about.
        NUCLEUS_THROTTLE_RATE="off",
    )
    with Gunicorn(gunicorn_command(port), port=port, env=env, log_path=tmp_path / "gunicorn.log") as gunicorn:
        yield gunicorn
        # Every client has had its answer, so nothing is lost by SIGKILL; a graceful stop would wait
        # seconds for the idle gthread workers.
        gunicorn.kill()


class Api:
    """A service calling the server: a bearer token, JSON bodies, and the header of a TLS proxy."""

    def __init__(self, server: Gunicorn, token: str):
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}

    def call(self, method: str, path: str, body=None, **headers: str) -> "Reply":
        """One request on a new connection (a kept-alive one would pay Nagle's delay per response).

        A server error other than 503 fails the test at once, quoting the server's log.
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=REQUEST_TIMEOUT)
        try:
            sent = {**self.headers, **{name.replace("_", "-"): value for name, value in headers.items()}}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                sent["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            received = {name.lower(): value for name, value in response.getheaders()}
            reply = Reply(response.status, received, json.loads(raw) if raw else None)
        finally:
            connection.close()
        assert reply.status < 500 or reply.status in OVERLOAD, f"{reply}\n{self.server.log_tail()}"
        return reply


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    def __repr__(self) -> str:
        return f"<{self.status} {self.body!r:.500}>"


class Stopped(Exception):
    """A client gave up because another one failed: that failure is the one to report."""


class Deadline:
    """When the clients of a test must stop: out of time, or as soon as one of them has failed."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.failed = threading.Event()

    def check(self, what: str) -> None:
        if self.failed.is_set():
            raise Stopped(what)
        assert time.monotonic() < self.at, f"{what}: out of time"


def retried(deadline: Deadline, what: str, attempt, *args):
    """attempt(*args) until it returns something other than None: at most MAX_ATTEMPTS times, in time.

    attempt returns None to be called again; it fails the test on an answer that is no reason to retry.
    """
    for _ in range(MAX_ATTEMPTS):
        deadline.check(what)
        result = attempt(*args)
        if result is not None:
            return result
    raise AssertionError(f"{what}: no success in {MAX_ATTEMPTS} attempts")


def refused(reply: Reply, counts: Counter) -> None:
    """Count a refusal worth retrying and back off before the retry; fail on any other answer.

    The pause is short and random (jitter), as a well-behaved client's is: retrying in lockstep
    would mostly collide again.
    """
    if reply.status in OVERLOAD:
        time.sleep(min(float(reply.headers.get("retry-after", "0.2")), 1.0))
    else:
        assert (reply.status, reply.code) in RETRY, reply
        time.sleep(random.uniform(0, BACKOFF))  # timing only: the requests stay seeded
    counts[reply.status, reply.code] += 1


def run_clients(client, count: int) -> list:
    """client(index, deadline) in count threads that start together; their results in index order.

    A client's exception fails the test (re-raised here); the deadline bounds them all.
    """
    deadline = Deadline(CLIENTS_TIMEOUT)
    barrier = threading.Barrier(count, timeout=30)

    def start(index: int):
        barrier.wait()
        try:
            return client(index, deadline)
        except BaseException:
            deadline.failed.set()
            raise

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(start, index) for index in range(count)]
        done, _ = wait(futures, timeout=CLIENTS_TIMEOUT + REQUEST_TIMEOUT + 5)
    assert len(done) == count, "a client did not finish"
    failures = [future.exception() for future in futures if future.exception() is not None]
    for failure in failures:
        if not isinstance(failure, Stopped):
            raise failure
    return [future.result() for future in futures]


def expect(reply: Reply, status: int) -> Reply:
    assert reply.status == status, reply
    return reply


def transactions_url() -> str:
    return reverse("transaction-list")


def gapless_history(collection: Collection, key: str) -> list[dict]:
    """The record's history, after checking that its versions are exactly 1, 2, ..., its version."""
    record = Record.objects.get(collection=collection, key=key)
    history = history_fields(collection, key)
    assert [fields["version"] for fields in history] == list(range(1, record.version + 1)), key
    assert history[-1]["data"] == record.data, key
    return history


# --- (a) read-modify-write with If-Match -------------------------------------------------------

COUNTER_CLIENTS, INCREMENTS = 8, 15


def test_a_counter_incremented_with_if_match_and_retries_ends_at_exactly_n(server, owner):
    counters = services.collection_create(actor=TEST_ACTOR, name="counters", owner=owner.service)
    services.record_create(collection=counters, key="hits", data={"n": 0}, actor=TEST_ACTOR)
    api, path = Api(server, owner.token), record_url("hits", "counters")
    refusals = Counter()

    def increment_once() -> int | None:
        got = expect(api.call("GET", path), 200)
        put = api.call("PUT", path, {"data": {"n": got.body["data"]["n"] + 1}}, If_Match=got.headers["etag"])
        if put.status == 200:
            assert put.headers["etag"] == f'"{put.body["version"]}"'
            return put.body["version"]
        refused(put, refusals)
        return None

    def increment(index: int, deadline: Deadline) -> list[int]:
        return [retried(deadline, f"client {index}", increment_once) for _ in range(INCREMENTS)]

    written = run_clients(increment, COUNTER_CLIENTS)

    total = COUNTER_CLIENTS * INCREMENTS
    record = Record.objects.get(collection=counters, key="hits")
    assert (record.data, record.version) == ({"n": total}, total + 1)
    assert sorted(itertools.chain.from_iterable(written)) == list(range(2, total + 2))
    history = gapless_history(counters, "hits")
    assert [fields["data"]["n"] for fields in history] == list(range(total + 1))
    assert refusals[412, "precondition_failed"] > 0, "the writers never collided: this proved nothing"


# --- (b) transactions that move an amount between two records ----------------------------------

ACCOUNTS, OPENING_BALANCE = 4, 1000
TRANSFER_CLIENTS, TRANSFERS = 6, 8


def test_concurrent_transfers_in_transactions_keep_the_sum_and_gapless_histories(server, owner):
    accounts = services.collection_create(actor=TEST_ACTOR, name="accounts", owner=owner.service)
    ledger = make_stream(owner.service, "ledger")
    keys = [f"acct-{n}" for n in range(ACCOUNTS)]
    for key in keys:
        services.record_create(
            collection=accounts, key=key, data={"balance": OPENING_BALANCE}, actor=TEST_ACTOR
        )
    api = Api(server, owner.token)
    refusals = Counter()

    def transfer_once(source: str, target: str, amount: int, event_id: str) -> str | None:
        """Read both balances, then write both with If-Match and log the transfer, in one transaction."""
        read = {
            key: expect(api.call("GET", record_url(key, "accounts")), 200).body for key in (source, target)
        }
        operations = [
            {
                "op": "patch",
                "collection": "accounts",
                "key": key,
                "data": {"balance": read[key]["data"]["balance"] + delta},
                "if_match": read[key]["version"],
            }
            for key, delta in ((source, -amount), (target, amount))
        ]
        logged = {
            "id": event_id,
            "type": "transfer",
            "data": {"from": source, "to": target, "amount": amount},
        }
        operations.append({"op": "append", "collection": "ledger", "events": [logged]})
        reply = api.call("POST", transactions_url(), {"operations": operations})
        if reply.status == 200:
            versions = [result["version"] for result in reply.body["results"][:2]]
            assert versions == [read[source]["version"] + 1, read[target]["version"] + 1]
            return event_id
        if reply.status == 412:
            assert reply.body["operation"] in (0, 1), reply
        refused(reply, refusals)
        return None

    def transfer(index: int, deadline: Deadline) -> list[str]:
        rng = random.Random(1000 + index)
        done = []
        for _ in range(TRANSFERS):
            source, target = rng.sample(keys, 2)
            amount, event_id = rng.randint(1, 100), str(uuid.UUID(int=rng.getrandbits(128), version=4))
            done.append(retried(deadline, f"client {index}", transfer_once, source, target, amount, event_id))
        return done

    transferred = run_clients(transfer, TRANSFER_CLIENTS)

    count = TRANSFER_CLIENTS * TRANSFERS
    balances = dict(Record.objects.filter(collection=accounts).values_list("key", "data__balance"))
    assert sum(balances.values()) == ACCOUNTS * OPENING_BALANCE
    events = list(
        Event.objects.filter(stream=ledger).order_by("offset").values_list("offset", "event_id", "data")
    )
    assert [offset for offset, _, _ in events] == list(range(1, count + 1))
    assert sorted(str(event_id) for _, event_id, _ in events) == sorted(itertools.chain(*transferred))
    replayed = dict.fromkeys(keys, OPENING_BALANCE)
    for _, _, data in events:
        replayed[data["from"]] -= data["amount"]
        replayed[data["to"]] += data["amount"]
    assert balances == replayed
    versions = [len(gapless_history(accounts, key)) for key in keys]
    assert sum(version - 1 for version in versions) == 2 * count  # each transfer wrote two versions
    assert refusals, "no transfer ever collided with another: this proved nothing"


# --- (c) concurrent appenders ------------------------------------------------------------------

APPEND_CLIENTS, APPENDS = 6, 10
BATCH_SIZES = (1, 1, 1, 3, 5, 10)


def test_concurrent_appenders_get_gapless_offsets_and_a_reader_misses_none(server, owner):
    stream = make_stream(owner.service, "events")
    api = Api(server, owner.token)
    plans = []  # per client: the batches it sends, each a list of event ids
    for index in range(APPEND_CLIENTS):
        rng = random.Random(2000 + index)
        sizes = [rng.choice(BATCH_SIZES) for _ in range(APPENDS)]
        plans.append([[str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)] for n in sizes])
    total = sum(len(batch) for plan in plans for batch in plan)
    refusals = Counter()

    def read_all(deadline: Deadline) -> list[int]:
        """Follow the stream with long polls, as a consumer does, until every event was seen."""
        seen: list[int] = []
        while len(seen) < total:
            deadline.check("the reader")
            page = expect(api.call("GET", f"{events_url()}?after={len(seen)}&limit=1000&wait=1"), 200).body
            offsets = [item["offset"] for item in page["results"]]
            assert offsets == list(range(len(seen) + 1, len(seen) + 1 + len(offsets))), offsets
            seen += offsets
        return seen

    def append_once(body: dict) -> dict | None:
        reply = api.call("POST", events_url(), body)
        if reply.status == 201:
            return reply.body
        refused(reply, refusals)
        return None

    def append(index: int, deadline: Deadline) -> list[int]:
        if index == APPEND_CLIENTS:
            return read_all(deadline)
        offsets = []
        for number, batch in enumerate(plans[index]):
            data = {"client": index, "batch": number}
            body = {"events": [{"id": event_id, "type": "appended", "data": data} for event_id in batch]}
            appended = retried(deadline, f"client {index}", append_once, body)
            got = [item["offset"] for item in appended["events"]]
            assert [item["id"] for item in appended["events"]] == batch
            assert got == list(range(appended["first_offset"], appended["last_offset"] + 1))  # one block
            offsets += got
        return offsets

    *written, seen = run_clients(append, APPEND_CLIENTS + 1)

    assert seen == list(range(1, total + 1))
    for offsets in written:
        assert offsets == sorted(offsets)  # a client's appends land in the order it made them
    assert sorted(itertools.chain(*written)) == list(range(1, total + 1))
    stored = list(Event.objects.filter(stream=stream).order_by("offset").values_list("offset", "event_id"))
    assert [offset for offset, _ in stored] == list(range(1, total + 1))
    sent = [event_id for plan in plans for batch in plan for event_id in batch]
    assert sorted(str(event_id) for _, event_id in stored) == sorted(sent)
    assert Collection.objects.get(pk=stream.pk).last_offset == total


# --- (d) the same Idempotency-Key at once ------------------------------------------------------

IDEMPOTENT_CLIENTS, ROUNDS = 8, 3


def idempotent_request(endpoint: str, round_number: int) -> tuple[str, dict]:
    """A POST that writes anew each time it runs: a record under a generated key (and an event)."""
    if endpoint == "records":
        return records_url(), {"data": {"round": round_number}}
    event = {"type": "once", "data": {"round": round_number}}
    operations = [
        {"op": "create", "collection": "items", "data": {"round": round_number}},
        {"op": "append", "collection": "events", "events": [event]},
    ]
    return transactions_url(), {"operations": operations}


@pytest.mark.parametrize("endpoint", ["records", "transactions"])
def test_concurrent_requests_with_one_idempotency_key_write_once(server, owner, items, endpoint):
    make_stream(owner.service, "events")
    api = Api(server, owner.token)

    def send_once(path: str, body: dict, key: str) -> Reply | None:
        reply = api.call("POST", path, body, Idempotency_Key=key)
        if reply.status in (200, 201):
            return reply
        assert (reply.status, reply.code) == (409, "idempotency_in_progress"), reply
        time.sleep(0.02)
        return None

    for round_number in range(ROUNDS):
        path, body = idempotent_request(endpoint, round_number)
        key = f"{endpoint}-{round_number}"

        replies = run_clients(
            lambda index, deadline, path=path, body=body, key=key: retried(
                deadline, f"client {index}", send_once, path, body, key
            ),
            IDEMPOTENT_CLIENTS,
        )

        assert len({(reply.status, json.dumps(reply.body)) for reply in replies}) == 1, replies
        executed = [reply for reply in replies if reply.headers.get("idempotent-replayed") != "true"]
        assert len(executed) == 1, replies
        created = Record.objects.filter(collection=items, data__round=round_number)
        assert created.count() == 1
        assert [fields["version"] for fields in history_fields(items, created.get().key)] == [1]
        if endpoint == "transactions":
            assert Event.objects.filter(stream__name="events", data__round=round_number).count() == 1
    assert IdempotencyKey.objects.count() == ROUNDS


# --- (e) bulk upserts of overlapping keys ------------------------------------------------------

BULK_CLIENTS, BULKS, KEYS, KEYS_PER_BULK = 6, 6, 24, 10


def test_concurrent_bulk_upserts_of_overlapping_keys_never_skip_or_repeat_a_version(server, owner, items):
    api = Api(server, owner.token)
    keys = [f"k{n:02}" for n in range(KEYS)]
    refusals = Counter()

    def upsert_once(body: dict) -> list[dict] | None:
        reply = api.call("POST", bulk_url(), body)
        if reply.status in (200, 201):
            return reply.body["results"]
        refused(reply, refusals)
        return None

    def upsert(index: int, deadline: Deadline) -> list[tuple[list[str], list[dict]]]:
        rng = random.Random(3000 + index)
        done = []
        for number in range(BULKS):
            chosen = rng.sample(keys, KEYS_PER_BULK)  # in random order: row locks are taken in any order
            records = [{"key": key, "data": {"client": index, "bulk": number}} for key in chosen]
            body = {"mode": "upsert", "records": records}
            done.append((chosen, retried(deadline, f"client {index}", upsert_once, body)))
        return done

    outcomes = list(itertools.chain(*run_clients(upsert, BULK_CLIENTS)))

    returned: dict[str, list[int]] = {key: [] for key in keys}
    for chosen, results in outcomes:
        assert [result["key"] for result in results] == chosen
        for result in results:
            returned[result["key"]].append(result["version"])
    for key in keys:
        written = sorted(returned[key])
        assert written == list(range(1, len(written) + 1)), key  # no two bulks got the same version
        if written:
            assert len(gapless_history(items, key)) == len(written), key
        else:
            assert not Record.objects.filter(collection=items, key=key).exists()
