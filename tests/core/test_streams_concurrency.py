"""Streams under concurrency through a real HTTP server: gapless offsets, racing retries, long-polls."""

import json
import random
import threading
import time
import uuid
from http.client import HTTPConnection
from urllib.parse import urlencode, urlsplit

import pytest
from django.db import connection

from core import selectors, services
from core.models import ConsumerPosition, Event
from tests.actors import TEST_ACTOR
from tests.core.streams_support import consumer_url, event, events_url, last_offset, make_stream

JOIN_TIMEOUT = 120  # seconds a thread may take at most; far above what the work needs


def call(base_url: str, token: str, method: str, path: str, body: dict | None = None, timeout: float = 60):
    """One request on a fresh connection; returns (status, body)."""
    address = urlsplit(base_url)
    http = HTTPConnection(address.hostname, address.port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        http.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = http.getresponse()
        return response.status, json.loads(response.read())
    finally:
        http.close()


def run_threads(targets: list, timeout: float = JOIN_TIMEOUT) -> None:
    """Start a thread per callable, all at once, and join them within timeout seconds."""
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0))
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish in time"


def stored(stream) -> list[tuple[int, str, dict]]:
    return [
        (offset, str(event_id), data)
        for offset, event_id, data in Event.objects.filter(stream=stream)
        .order_by("offset")
        .values_list("offset", "event_id", "data")
    ]


class Reader(threading.Thread):
    """GET events with wait= in a thread; records when it answered and what."""

    def __init__(self, base_url: str, token: str, path: str, params: dict):
        super().__init__(daemon=True)
        self.args = (base_url, token, "GET", f"{path}?{urlencode(params)}")
        self.outcome: dict = {}

    def run(self):
        try:
            self.outcome["started"] = time.monotonic()
            self.outcome["status"], self.outcome["body"] = call(*self.args)
        except Exception as exc:  # reported by the test
            self.outcome["error"] = repr(exc)
        finally:
            self.outcome["answered"] = time.monotonic()

    def answer(self) -> dict:
        self.join(timeout=60)
        assert not self.is_alive(), "the long-poll did not answer"
        assert "error" not in self.outcome, self.outcome
        return self.outcome


# --- concurrent appenders (PostgreSQL) -------------------------------------------------------------

PRODUCERS = 6
REQUESTS = 30
MAX_BATCH = 20


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appenders_get_gapless_offsets_and_keep_each_producers_order(live_server, owner):
    stream = make_stream(owner.service)
    outcomes = [{"sent": [], "responses": [], "errors": []} for _ in range(PRODUCERS)]

    def produce(producer: int) -> None:
        chooser, outcome = random.Random(producer), outcomes[producer]
        try:
            for request in range(REQUESTS):
                size = 1 if request % 3 == 0 else chooser.randint(1, MAX_BATCH)
                batch = []
                for _ in range(size):
                    seq = len(outcome["sent"])
                    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"producer-{producer}/{seq}"))
                    batch.append(event("load", {"producer": producer, "seq": seq}, event_id))
                    outcome["sent"].append(event_id)
                status, body = call(live_server.url, owner.token, "POST", events_url(), {"events": batch})
                if status != 201:
                    outcome["errors"].append((status, body))
                    return
                outcome["responses"].append((batch, body))
        except Exception as exc:  # reported below, so that a failing thread fails the test
            outcome["errors"].append(repr(exc))

    run_threads([lambda p=p: produce(p) for p in range(PRODUCERS)])

    assert [o["errors"] for o in outcomes] == [[]] * PRODUCERS
    assert [len(o["responses"]) for o in outcomes] == [REQUESTS] * PRODUCERS
    rows = stored(stream)
    total = sum(len(o["sent"]) for o in outcomes)
    assert [offset for offset, _, _ in rows] == list(range(1, total + 1))  # gapless, no duplicates
    assert last_offset(stream) == total
    assert len({event_id for _, event_id, _ in rows}) == total
    offset_of = {event_id: offset for offset, event_id, _ in rows}
    for producer, outcome in enumerate(outcomes):
        # each producer's events are stored in the order its requests completed, as sent
        mine = [(data["seq"], offset) for offset, _, data in rows if data["producer"] == producer]
        assert [seq for seq, _ in mine] == list(range(len(outcome["sent"])))
        assert [offset_of[event_id] for event_id in outcome["sent"]] == [offset for _, offset in mine]
        for batch, body in outcome["responses"]:
            reported = [(item["id"], item["offset"]) for item in body["events"]]
            assert reported == [(e["id"], offset_of[e["id"]]) for e in batch]
            first = reported[0][1]
            # a batch of new events is appended in one piece: consecutive offsets
            assert [offset for _, offset in reported] == list(range(first, first + len(batch)))
            assert (body["first_offset"], body["last_offset"]) == (first, first + len(batch) - 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_retries_of_the_same_events_append_them_once_and_all_report_the_same_offsets(
    live_server, owner, writer
):
    stream = make_stream(owner.service, writers=("writer",))
    rounds, racers = 5, 6
    answers: list[list] = [[] for _ in range(rounds)]
    errors: list = []
    others: list = []

    def retry(batch: list, answers: list) -> None:
        try:
            answers.append(call(live_server.url, owner.token, "POST", events_url(), {"events": batch}))
        except Exception as exc:
            errors.append(repr(exc))

    def interfere(count: int) -> None:
        try:
            for _ in range(count):
                others.append(
                    call(live_server.url, writer.token, "POST", events_url(), {"events": [event("other")]})
                )
        except Exception as exc:
            errors.append(repr(exc))

    batches = []
    for round_ in range(rounds):
        batch = [event("retried", {"round": round_, "i": i}) for i in range(5)]
        batches.append(batch)
        run_threads(
            [lambda b=batch, a=answers[round_]: retry(b, a) for _ in range(racers)] + [lambda: interfere(3)]
        )

    assert errors == []
    assert all(status == 201 for status, _ in others)
    rows = stored(stream)
    total = rounds * 5 + rounds * 3
    assert [offset for offset, _, _ in rows] == list(range(1, total + 1))
    assert last_offset(stream) == total
    offset_of = {event_id: offset for offset, event_id, _ in rows}
    for batch, round_answers in zip(batches, answers, strict=True):
        assert len(round_answers) == racers
        # one racer appended the batch (201); the others found it there (200, every event a duplicate)
        assert sorted(status for status, _ in round_answers) == [200] * (racers - 1) + [201], round_answers
        offsets = [offset_of[e["id"]] for e in batch]
        for status, body in round_answers:
            appended = status == 201
            assert body["events"] == [
                {"id": e["id"], "offset": offset, "duplicate": not appended}
                for e, offset in zip(batch, offsets, strict=True)
            ]
            assert (body["first_offset"], body["last_offset"]) == (
                (offsets[0], offsets[-1]) if appended else (None, None)
            )
        assert sum(1 for _, event_id, _ in rows if event_id in {e["id"] for e in batch}) == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_retries_with_expected_last_offset_all_succeed_once_appended(live_server, owner):
    stream = make_stream(owner.service)
    batch = [event("guarded", {"i": i}) for i in range(3)]
    answers, errors = [], []

    def retry() -> None:
        try:
            answers.append(
                call(
                    live_server.url,
                    owner.token,
                    "POST",
                    events_url(),
                    {"events": batch, "expected_last_offset": 0},
                )
            )
        except Exception as exc:
            errors.append(repr(exc))

    run_threads([retry] * 6)

    assert errors == []
    # one retry appended (201); the others found every event there and skipped the check (200)
    assert sorted(status for status, _ in answers) == [200] * 5 + [201], answers
    assert all(
        [(item["id"], item["offset"]) for item in body["events"]]
        == [(e["id"], i + 1) for i, e in enumerate(batch)]
        for _, body in answers
    )
    assert [offset for offset, _, _ in stored(stream)] == [1, 2, 3]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_consumers_only_ever_move_a_position_forward(live_server, owner, reader):
    stream = make_stream(owner.service, readers=("reader",))
    services.stream_append(stream=stream, events=[event() for _ in range(60)], actor=TEST_ACTOR)
    answers, errors = [], []

    def commit(offsets: list[int]) -> None:
        try:
            for offset in offsets:
                answers.append(
                    (
                        offset,
                        *call(live_server.url, reader.token, "PUT", consumer_url("c"), {"offset": offset}),
                    )
                )
        except Exception as exc:
            errors.append(repr(exc))

    run_threads([lambda start=start: commit(list(range(start, 61, 6))) for start in range(1, 7)])

    assert errors == []
    assert {status for _, status, _ in answers} <= {200, 409}
    refused = [body for _, status, body in answers if status == 409]
    assert all(body["code"] == "position_moves_backwards" for body in refused)
    accepted = [offset for offset, status, _ in answers if status == 200]
    assert max(accepted) == 60
    position = ConsumerPosition.objects.get(stream=stream, consumer="c")
    assert (position.offset, position.updated_by) == (60, "service:reader")


# --- long-poll --------------------------------------------------------------------------------------


def idle_in_transaction() -> int:
    """Sessions of this test database that sit idle inside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%'"
        )
        return cursor.fetchone()[0]


def until_waiting(*polls: "Reader") -> None:
    """Give the long-polls time to find nothing and start waiting; none may have answered yet."""
    time.sleep(0.5)
    assert all(poll.is_alive() for poll in polls), "a long-poll answered before anything was appended"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_returns_soon_after_an_append_without_holding_a_transaction(live_server, owner, reader):
    stream = make_stream(owner.service, readers=("reader",))
    services.stream_append(stream=stream, events=[event("old")], actor=TEST_ACTOR)
    poll = Reader(live_server.url, reader.token, events_url(), {"after": 1, "wait": 10})
    poll.start()
    until_waiting(poll)
    assert idle_in_transaction() == 0

    status, _ = call(live_server.url, owner.token, "POST", events_url(), {"events": [event("new", {"n": 2})]})
    appended = time.monotonic()
    outcome = poll.answer()

    assert status == 201
    assert outcome["status"] == 200
    assert outcome["answered"] - appended < 1.5
    assert outcome["answered"] - outcome["started"] < 5  # far below the 10 s it may wait
    body = outcome["body"]
    assert [(e["offset"], e["type"], e["data"]) for e in body["results"]] == [(2, "new", {"n": 2})]
    assert (body["last_offset"], body["next_after"]) == (2, 2)
    assert last_offset(stream) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_several_long_polls_all_wake_on_one_append(live_server, owner, reader):
    make_stream(owner.service, readers=("reader",))
    polls = [Reader(live_server.url, reader.token, events_url(), {"wait": 10}) for _ in range(3)]
    for poll in polls:
        poll.start()
    until_waiting(*polls)

    call(live_server.url, owner.token, "POST", events_url(), {"events": [event("wake")]})
    appended = time.monotonic()

    for poll in polls:
        outcome = poll.answer()
        assert outcome["answered"] - appended < 1.5
        assert [e["type"] for e in outcome["body"]["results"]] == ["wake"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_with_nothing_appended_returns_an_empty_page_after_the_wait(live_server, owner, reader):
    make_stream(owner.service, readers=("reader",))

    outcome = Reader(live_server.url, reader.token, events_url(), {"after": 0, "wait": 1})
    outcome.start()
    answer = outcome.answer()

    assert answer["status"] == 200
    assert 0.9 <= answer["answered"] - answer["started"] <= 3
    assert answer["body"] == {"results": [], "last_offset": 0, "next_after": 0}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_is_not_woken_by_an_append_to_another_stream(live_server, owner, reader):
    make_stream(owner.service, readers=("reader",))
    other = make_stream(owner.service, "audit")
    poll = Reader(live_server.url, reader.token, events_url(), {"wait": 1.5})
    poll.start()
    until_waiting(poll)

    services.stream_append(stream=other, events=[event("elsewhere")], actor=TEST_ACTOR)
    answer = poll.answer()

    assert answer["answered"] - answer["started"] >= 1.4
    assert answer["body"]["results"] == []


@pytest.mark.django_db(transaction=True)
def test_waiting_for_events_returns_early_when_one_is_appended_and_times_out_otherwise(owner):
    """Through the selector, on either database (SQLite polls; PostgreSQL listens)."""
    stream = make_stream(owner.service)
    services.stream_append(stream=stream, events=[event("old")], actor=TEST_ACTOR)
    failures: list = []

    started = time.monotonic()
    selectors.wait_for_events(stream=stream, after=1, timeout=1)
    timed_out = time.monotonic() - started

    def append_later(event_type: str) -> threading.Thread:
        def append() -> None:
            try:
                time.sleep(0.5)
                services.stream_append(stream=stream, events=[event(event_type)], actor=TEST_ACTOR)
            except Exception as exc:  # reported by the test
                failures.append(repr(exc))
            finally:
                connection.close()

        appender = threading.Thread(target=append, daemon=True)
        appender.start()
        return appender

    started = time.monotonic()
    appender = append_later("new")
    selectors.wait_for_events(stream=stream, after=1, timeout=10)
    woke = time.monotonic() - started
    appender.join(timeout=30)

    started = time.monotonic()
    appender_past = append_later("not.past.after")
    selectors.wait_for_events(stream=stream, after=5, timeout=1)
    waited_past = time.monotonic() - started
    appender_past.join(timeout=30)

    assert not appender.is_alive()
    assert not appender_past.is_alive()
    assert failures == []
    assert 0.9 <= timed_out <= 3
    assert 0.4 <= woke < 2.5  # far below the 10 s it may wait
    assert 0.9 <= waited_past <= 3  # an event at offset 3 is no event after 5
    events, _, last = selectors.events_page(
        stream=stream, after=1, limit=10, encode=lambda e: e.type.encode()
    )
    assert (events, last) == ([b"new", b"not.past.after"], 3)


@pytest.mark.django_db
def test_a_long_poll_on_an_event_already_there_returns_at_once(owner):
    stream = make_stream(owner.service)
    services.stream_append(stream=stream, events=[event("there")], actor=TEST_ACTOR)

    started = time.monotonic()
    events, _, _ = selectors.events_page(stream=stream, after=0, limit=10, encode=lambda e: e.type.encode())
    selectors.wait_for_events(stream=stream, after=0, timeout=10)

    assert time.monotonic() - started < 1
    assert events == [b"there"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_past_the_end_is_not_woken_by_an_append_that_does_not_reach_after(
    live_server, owner, reader
):
    stream = make_stream(owner.service, readers=("reader",))
    services.stream_append(stream=stream, events=[event("old")], actor=TEST_ACTOR)
    poll = Reader(live_server.url, reader.token, events_url(), {"after": 3, "wait": 1.5})
    poll.start()
    until_waiting(poll)

    services.stream_append(stream=stream, events=[event("still.before.after")], actor=TEST_ACTOR)
    answer = poll.answer()

    assert answer["answered"] - answer["started"] >= 1.4
    assert answer["body"] == {"results": [], "last_offset": 2, "next_after": 3}
