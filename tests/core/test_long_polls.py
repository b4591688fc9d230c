"""The limits of waiting long-polls and the process' stream watcher (core/long_polls.py), on either
database. The server side, many long-polls at once, is in tests/concurrency/test_long_polls.py."""

import asyncio
import threading
import time

import pytest
from django.db import connection

from core import selectors
from core.long_polls import stream_watcher
from tests.core.records_support import assert_problem
from tests.core.streams_support import append, events_url, make_stream

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(owner, reader):
    return make_stream(owner.service, readers=("reader",))


def test_a_long_poll_past_the_callers_share_is_refused_with_429_before_it_waits(stream, reader, settings):
    settings.NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER = 1
    with stream_watcher().subscribe(stream_id=stream.pk, after=0, caller="service:reader"):
        started = time.monotonic()
        response = reader.get(f"{events_url()}?wait=5")

        assert time.monotonic() - started < 2
        assert_problem(response, 429, "too_many_long_polls")
        assert response["Retry-After"] == "1"
        assert stream_watcher().waiting == 1  # the refused long-poll left nothing behind
    assert stream_watcher().waiting == 0


def test_a_long_poll_past_the_process_limit_is_refused_with_503_whoever_asks(stream, reader, settings):
    settings.NUCLEUS_LONG_POLL_MAX_WAITING = 1
    with stream_watcher().subscribe(stream_id=stream.pk, after=0, caller="service:someone-else"):
        response = reader.get(f"{events_url()}?wait=5")

        assert_problem(response, 503, "long_polls_exhausted")
        assert response["Retry-After"] == "1"


def test_reads_that_do_not_wait_are_served_when_the_long_polls_are_full(stream, reader, settings):
    settings.NUCLEUS_LONG_POLL_MAX_WAITING = 1
    append(stream, 1)
    with stream_watcher().subscribe(stream_id=stream.pk, after=0, caller="service:someone-else"):
        assert reader.get(events_url()).status_code == 200
        found = reader.get(f"{events_url()}?wait=5")  # an event is there: no need to wait

    assert found.status_code == 200
    assert [e["offset"] for e in found.json()["results"]] == [1]


def test_a_caller_can_long_poll_again_once_its_waits_are_over(stream, reader, settings):
    settings.NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER = 1

    first = reader.get(f"{events_url()}?wait=0.2")
    second = reader.get(f"{events_url()}?wait=0.2")

    assert (first.status_code, second.status_code) == (200, 200)
    assert stream_watcher().waiting == 0


def test_the_watcher_wakes_only_waiters_of_the_stream_whose_offset_passes_theirs():
    watcher = stream_watcher()
    settled(watcher)
    behind = watcher.subscribe(stream_id=1, after=4, caller="a")
    ahead = watcher.subscribe(stream_id=1, after=5, caller="a")
    elsewhere = watcher.subscribe(stream_id=2, after=0, caller="b")
    try:
        watcher._dispatch("1:5")
        watcher._dispatch("not-a-notification")

        assert behind.wait(0) and not ahead.wait(0) and not elsewhere.wait(0)
        behind.rearm()
        assert not behind.wait(0)
    finally:
        for subscription in (behind, ahead, elsewhere):
            subscription.close()
    assert watcher.waiting == 0


def settled(watcher) -> None:
    """On PostgreSQL, wait until the listener has connected: connecting wakes every waiter to read again."""
    with watcher.subscribe(stream_id=0, after=0, caller="settling"):
        deadline = time.monotonic() + 10
        while connection.vendor == "postgresql" and not watcher.listening:
            assert time.monotonic() < deadline, "the listener did not connect"
            time.sleep(0.05)


def test_an_async_waiter_is_woken_from_another_thread_and_a_cancelled_one_leaves_no_trace():
    watcher = stream_watcher()
    settled(watcher)

    async def scenario():
        with watcher.subscribe(stream_id=7, after=0, caller="a") as woken:
            threading.Timer(0.2, watcher._dispatch, ["7:1"]).start()
            started = time.monotonic()
            assert await woken.wait_async(5)
            assert time.monotonic() - started < 2
        with watcher.subscribe(stream_id=7, after=0, caller="a") as timing_out:
            assert not await timing_out.wait_async(0.2)
        abandoned = watcher.subscribe(stream_id=7, after=0, caller="a")
        task = asyncio.ensure_future(abandoned.wait_async(30))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        abandoned.close()

    asyncio.run(scenario())
    assert watcher.waiting == 0


def test_a_closing_watcher_wakes_its_waiters_and_lets_no_new_one_wait(stream):
    watcher = stream_watcher()
    waiting = watcher.subscribe(stream_id=stream.pk, after=0, caller="a")
    watcher.close()

    late = watcher.subscribe(stream_id=stream.pk, after=0, caller="a")

    assert waiting.wait(0) and late.wait(0)
    waiting.close()
    late.close()
    assert watcher.waiting == 0


@pytest.mark.django_db(transaction=True)
def test_waiting_in_a_thread_returns_when_another_thread_appends(stream):
    """The synchronous wait (runserver, the test client) on the shared watcher, on either database."""

    def append_one() -> None:
        try:
            append(stream, 1)
        finally:
            connection.close()

    appender = threading.Timer(0.3, append_one)
    appender.start()
    started = time.monotonic()
    selectors.wait_for_events(stream=stream, after=0, timeout=10)
    woke = time.monotonic() - started
    appender.join()

    assert woke < 3
    assert stream_watcher().waiting == 0
