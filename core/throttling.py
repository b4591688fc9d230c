"""Per-principal request rates, counted in the database so that every Nucleus process shares them.

Each principal (`service:<name>`, `operator:<username>`) has one row in `core_throttle_window`: the
end of its current fixed window and the requests counted in it. Every counted request costs exactly
one statement, an UPSERT that counts the request and returns the count, so processes never read and
write separately and cannot lose a hit between them. DRF checks throttles before the view runs and
before an Idempotency-Key is claimed; no transaction is open then (ATOMIC_REQUESTS is off), so the
statement commits on its own and its row lock lasts only that statement, never the request.

Why a table and not Django's database cache: the cache's incr() is a read followed by a write (two
statements, and concurrent processes lose counts between them), and its culling adds more; a shared
cache server (Redis, memcached) would be another service to run for one counter. On PostgreSQL the
table is UNLOGGED: the counters are worth nothing after a crash, so commits of the UPSERT skip the
WAL flush and a read stays cheap. On SQLite the UPSERT is a short write, so a request waits while a
long write transaction (a large bulk write) holds the database's single write lock.

A window starts at a principal's first request and lasts the rate's period; a client may therefore
send up to twice the rate across a window's boundary, the usual price of fixed windows.
"""

import functools
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

TABLE = "core_throttle_window"
OFF = frozenset({"0", "off", "none", "false"})
_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([a-z]+?)s?\s*")
_HIT = f"""
INSERT INTO {TABLE} (scope, window_end_ms, hits) VALUES (%s, %s, 1)
ON CONFLICT (scope) DO UPDATE SET
    hits = CASE WHEN {TABLE}.window_end_ms <= %s THEN 1 ELSE {TABLE}.hits + 1 END,
    window_end_ms = CASE WHEN {TABLE}.window_end_ms <= %s
                         THEN excluded.window_end_ms ELSE {TABLE}.window_end_ms END
RETURNING hits, window_end_ms
"""  # noqa: S608 (TABLE is a constant)


@dataclass(frozen=True)
class Rate:
    requests: int
    period: int  # seconds


@functools.lru_cache(maxsize=32)
def parse_rate(value: str, *, setting: str = "NUCLEUS_THROTTLE_RATE") -> Rate | None:
    """A rate such as "6000/min" as a Rate; None for "0" or "off" (not throttled)."""
    text = value.strip().lower()
    if text in OFF:
        return None
    match = _RATE.fullmatch(text)
    if match and int(match.group(1)) > 0 and match.group(2) in _PERIODS:
        return Rate(requests=int(match.group(1)), period=_PERIODS[match.group(2)])
    raise ImproperlyConfigured(
        f"{setting}={value!r} is not a rate: write requests per second, minute, hour or day "
        "(e.g. 6000/min, 100/s, 50000/hour), or off (or 0) to turn throttling off."
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def throttle_hit(*, scope: str, period: int) -> tuple[int, int]:
    """Count one request of scope; (requests in its current window, when that window ends, ms).

    One UPSERT statement: a window that has ended is replaced by one that starts now.
    """
    now = now_ms()
    with connection.cursor() as cursor:
        cursor.execute(_HIT, [scope, now + period * 1000, now, now])
        ((hits, window_end_ms),) = cursor.fetchall()  # fetch all: SQLite commits once the rows are read
    return hits, window_end_ms


class PrincipalRateThrottle:
    """NUCLEUS_THROTTLE_RATE per service, NUCLEUS_THROTTLE_OPERATOR_RATE per operator (default: off).

    A DRF throttle: too many requests get 429 `throttled` with Retry-After, the seconds until the
    window ends. Requests without a principal (the OpenAPI document, failed authentication) are not
    counted. This module is read by settings, so it imports nothing from DRF.
    """

    def __init__(self):
        self.window_end_ms: int | None = None

    def allow_request(self, request, view) -> bool:
        principal = request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            return True
        setting = (
            "NUCLEUS_THROTTLE_RATE" if principal.service is not None else "NUCLEUS_THROTTLE_OPERATOR_RATE"
        )
        rate = parse_rate(getattr(settings, setting), setting=setting)
        if rate is None:
            return True
        hits, self.window_end_ms = throttle_hit(scope=principal.label, period=rate.period)
        return hits <= rate.requests

    def wait(self) -> int | None:
        if self.window_end_ms is None:
            return None
        return max(1, math.ceil((self.window_end_ms - now_ms()) / 1000))
