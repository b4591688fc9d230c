"""Long-poll wake-ups: one watcher per process tells every waiting reader that its stream has moved.

On PostgreSQL the watcher holds the process' only LISTEN connection, on one channel for all streams
(an append NOTIFYs "stream_id:last_offset" when it commits), and reconnects after an outage. SQLite
has no LISTEN: there the watcher reads the offsets of the watched streams every 100 ms, in one query
for all waiters. Waiters hold no database connection and no transaction while they wait.

A reader subscribes before it first reads the stream, so an append that commits after that read
always wakes it. A wake-up is a hint to read again, never the answer: readers read the events
themselves, with their own access checks.
"""

import asyncio
import contextlib
import logging
import os
import threading
from collections import Counter

from django.conf import settings
from django.db import connection
from prometheus_client import Gauge

from core.errors import NucleusError

logger = logging.getLogger("nucleus.long_polls")

WAITING = Gauge(
    "nucleus_long_polls_waiting",
    "Long-polls waiting for an event, in all processes of the server.",
    multiprocess_mode="livesum",
)

CHANNEL = "nucleus_streams"
POLL_SECONDS = 0.1  # SQLite: how often the watched streams' offsets are read
LISTEN_TICK_SECONDS = 1.0  # PostgreSQL: how often the listener looks up from its socket to check for stop
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # pauses between attempts to reconnect, the last repeated


def notification(stream_id: int, last_offset: int) -> str:
    """The payload an append NOTIFYs on CHANNEL."""
    return f"{stream_id}:{last_offset}"


class TooManyLongPolls(NucleusError):
    status, code, title = 429, "too_many_long_polls", "Too many requests"
    retry_after = 1


class LongPollsExhausted(NucleusError):
    status, code, title = 503, "long_polls_exhausted", "Service unavailable"
    retry_after = 1


class Subscription:
    """A reader waiting for an event after `after` on one stream.

    Once woken it stays woken until rearm(): a reader rearms, then reads, so that an append between
    its wake-up and its read is never missed. Close it (or use it as a context manager) when done.
    """

    def __init__(self, watcher: "StreamWatcher", stream_id: int, after: int, caller: str):
        self.watcher = watcher
        self.stream_id = stream_id
        self.after = after
        self.caller = caller
        self._lock = threading.Lock()
        self._woken = threading.Event()
        self._async_waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None
        self.closed = False

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def wake(self) -> None:
        with self._lock:
            self._woken.set()
            waiter, self._async_waiter = self._async_waiter, None
        if waiter is not None:
            loop, future = waiter
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    def rearm(self) -> None:
        with self._lock:
            self._woken.clear()

    def wait(self, timeout: float) -> bool:
        """Block this thread until woken (True) or for timeout seconds (False)."""
        return self._woken.wait(max(timeout, 0))

    async def wait_async(self, timeout: float) -> bool:
        """Wait on the running event loop, holding no thread, until woken (True) or timeout (False)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._woken.is_set():
                return True
            self._async_waiter = (loop, future)
        try:
            await asyncio.wait_for(future, max(timeout, 0))
            return True
        except TimeoutError:
            return self._woken.is_set()
        finally:
            with self._lock:
                if self._async_waiter is not None and self._async_waiter[1] is future:
                    self._async_waiter = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.watcher.unsubscribe(self)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class StreamWatcher:
    """The process' waiting readers, by stream, and the thread that wakes them."""

    def __init__(self):
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._subscribers: dict[int, set[Subscription]] = {}
        self._per_caller: Counter[str] = Counter()
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()  # wakes the idle SQLite poller
        self.closed = False
        self.listening = False

    @property
    def waiting(self) -> int:
        return self._waiting

    def subscribe(self, *, stream_id: int, after: int, caller: str) -> Subscription:
        """Register a reader; 429 past the caller's share of this process' waiters, 503 past the total.

        Starts the watcher thread on first use. After close(), the subscription is woken at once.
        """
        subscription = Subscription(self, stream_id, after, caller)
        with self._lock:
            if self.closed:
                subscription.closed = True
                subscription.wake()
                return subscription
            if self._waiting >= settings.NUCLEUS_LONG_POLL_MAX_WAITING:
                raise LongPollsExhausted(
                    f"This server process already holds {self._waiting} waiting long-polls, its limit. "
                    "Retry after a second, or poll without wait."
                )
            if self._per_caller[caller] >= settings.NUCLEUS_LONG_POLL_MAX_WAITING_PER_CALLER:
                raise TooManyLongPolls(
                    f"You already hold {self._per_caller[caller]} waiting long-polls on this server process, "
                    "the limit per caller. Retry after a second, or poll without wait."
                )
            self._subscribers.setdefault(stream_id, set()).add(subscription)
            self._per_caller[caller] += 1
            self._waiting += 1
            WAITING.inc()
            self._ensure_thread()
        self._subscribed.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            waiting = self._subscribers.get(subscription.stream_id)
            if waiting is None or subscription not in waiting:
                return
            waiting.discard(subscription)
            if not waiting:
                del self._subscribers[subscription.stream_id]
            self._per_caller[subscription.caller] -= 1
            if not self._per_caller[subscription.caller]:
                del self._per_caller[subscription.caller]
            self._waiting -= 1
            WAITING.dec()

    def close(self) -> None:
        """The server is stopping: wake every waiter now, and let new ones wait no more."""
        with self._lock:
            self.closed = True
        self._wake_all()

    def stop(self) -> None:
        """Stop the thread and close its connection (a process that ends, and tests); the next
        subscription starts the watcher afresh."""
        self._stop.set()
        self._subscribed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._stop.clear()
        self._subscribed.clear()
        self.closed = False

    # --- the watcher thread ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="nucleus-stream-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            if connection.vendor == "postgresql":
                self._listen()
            else:
                self._poll()
        finally:
            self.listening = False
            connection.close()

    def _listen(self) -> None:
        """LISTEN on one connection until stopped; after a lost connection, reconnect with backoff."""
        import psycopg

        failures = 0
        while not self._stop.is_set():
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params.pop("options", None)  # no statement_timeout: the connection waits, it runs no statement
            # A peer that vanished without a word (a cut network) is noticed within about a minute.
            keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10}
            try:
                with psycopg.connect(**params, **keepalives, autocommit=True, connect_timeout=10) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        logger.warning("The long-poll listener is connected again.")
                    failures = 0
                    # Appends committed while nobody listened woke nobody: every waiter reads again.
                    self._wake_all()
                    self.listening = True
                    while not self._stop.is_set():
                        for notify in listener.notifies(timeout=LISTEN_TICK_SECONDS):
                            self._dispatch(notify.payload)
            except psycopg.Error as exc:
                self.listening = False
                if not failures:
                    logger.warning("The long-poll listener lost its database connection: %s", exc)
                self._stop.wait(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
                failures += 1

    def _poll(self) -> None:
        """Read the watched streams' offsets every POLL_SECONDS while anyone waits; idle otherwise."""
        from core.models import Collection

        while not self._stop.is_set():
            with self._lock:
                stream_ids = list(self._subscribers)
                if not stream_ids:
                    self._subscribed.clear()
            if not stream_ids:
                connection.close()
                self._subscribed.wait()
                continue
            try:
                for start in range(0, len(stream_ids), 500):  # within SQLite's limit of query parameters
                    chunk = stream_ids[start : start + 500]
                    for stream_id, last_offset in Collection.objects.filter(pk__in=chunk).values_list(
                        "pk", "last_offset"
                    ):
                        self._wake(stream_id, last_offset)
            except Exception as exc:  # a busy or vanished database: the next round tries again
                logger.warning("The long-poll watcher could not read stream offsets: %s", exc)
                connection.close()
            self._stop.wait(POLL_SECONDS)

    def _dispatch(self, payload: str) -> None:
        stream_id, _, last_offset = payload.partition(":")
        try:
            self._wake(int(stream_id), int(last_offset))
        except ValueError:
            logger.warning("Ignored a malformed notification on %s: %r", CHANNEL, payload[:100])

    def _wake(self, stream_id: int, last_offset: int) -> None:
        with self._lock:
            woken = [s for s in self._subscribers.get(stream_id, ()) if last_offset > s.after]
        for subscription in woken:
            subscription.wake()

    def _wake_all(self) -> None:
        with self._lock:
            everyone = [s for subscriptions in self._subscribers.values() for s in subscriptions]
        for subscription in everyone:
            subscription.wake()


_watcher: StreamWatcher | None = None
_watcher_lock = threading.Lock()


def stream_watcher() -> StreamWatcher:
    """This process' watcher; a forked child (a gunicorn worker) gets a fresh one."""
    global _watcher
    with _watcher_lock:
        if _watcher is None or _watcher._pid != os.getpid():
            _watcher = StreamWatcher()
        return _watcher
