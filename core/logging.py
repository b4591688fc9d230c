"""JSON-lines log records carrying the request id, and the log lines of committed writes.

This module is imported while logging is configured, before the apps are ready: no models at import.
"""

import json
import logging
import re
from datetime import UTC, datetime

from django.db import transaction

from core.request_id import get_request_id

write_log = logging.getLogger("nucleus.writes")

# A write log line lists at most this many records: a bulk write of 1000 logs 20 lines, and with keys
# of at most 200 characters every line stays under 16 KiB, the line limit of Docker's log drivers.
RECORDS_PER_LINE = 50

# Attributes a log call may pass in `extra`, written as these JSON fields when present.
_FIELDS = (
    ("principal", "principal"),
    ("method", "method"),
    ("path", "path"),
    ("status", "status_code"),
    ("duration_ms", "duration_ms"),
    ("actor", "actor"),
    ("collection", "collection"),
    ("records", "records"),
    ("stream", "stream"),
    ("first_offset", "first_offset"),
    ("last_offset", "last_offset"),
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # Django logs 4xx/5xx responses after the middleware has left: the request still knows its id.
            request_id = getattr(getattr(record, "request", None), "request_id", "")
            record.request_id = get_request_id() or (request_id if isinstance(request_id, str) else "")
        return True


# A query string in a request line: up to the protocol (the last " HTTP/" of the line, since a client
# that does not encode its URL may put spaces in it), else up to the end of the line.
_QUERY_STRING = re.compile(r"\?(?:.*(?= HTTP/\d)|.*)")
# What gunicorn quotes of a request it refuses ("Invalid HTTP Version: '...'"): the client's bytes.
_QUOTED_INPUT = re.compile(r"""[:\s]*['"].*""")


class RequestLineFilter(logging.Filter):
    """Keeps query strings, which hold record data in `where`, out of the lines servers log about requests.

    On Django's development server (django.server: its request lines and its complaints about
    malformed ones) and gunicorn's error log (gunicorn.error, whose warnings about a malformed request
    quote it: only the reason is kept). Paths stay: they are in Nucleus' own request log too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _QUERY_STRING.sub("", record.msg)
            if record.name == "gunicorn.error" and record.msg.startswith("Invalid request from"):
                record.msg = _QUOTED_INPUT.sub("", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY_STRING.sub("", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the known extras, any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        for name, attribute in _FIELDS:
            value = getattr(record, attribute, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_records_changed(collection: str, changes: list[tuple[str, dict]], *, actor: str) -> None:
    """Once the transaction commits, log which records a write changed: collection, key, version, op.

    `changes` is [(op, row)] of one collection, op one of created/updated/deleted, row a record row
    (core.history.RECORD_ROW). Never the data. Costs one callback per write and one line per
    RECORDS_PER_LINE records; nothing if a rollback discards the write, nothing at all when INFO is
    not logged.
    """
    if not changes or not write_log.isEnabledFor(logging.INFO):
        return
    items = [{"key": row["key"], "version": row["version"], "op": op} for op, row in changes]

    def emit() -> None:
        for start in range(0, len(items), RECORDS_PER_LINE):
            part = items[start : start + RECORDS_PER_LINE]
            write_log.info(
                "%d records written to %s",
                len(part),
                collection,
                extra={"actor": actor, "collection": collection, "records": part},
            )

    transaction.on_commit(emit, robust=True)


def log_events_appended(*, stream: str, first_offset: int, last_offset: int, actor: str) -> None:
    """Once the transaction commits, log the offsets of the events an append added. Never their data."""
    if not write_log.isEnabledFor(logging.INFO):
        return

    def emit() -> None:
        write_log.info(
            "events %d-%d appended to %s",
            first_offset,
            last_offset,
            stream,
            extra={
                "actor": actor,
                "stream": stream,
                "first_offset": first_offset,
                "last_offset": last_offset,
            },
        )

    transaction.on_commit(emit, robust=True)
