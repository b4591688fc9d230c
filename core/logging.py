"""JSON-lines log records carrying the request id."""

import json
import logging
from datetime import UTC, datetime

from core.request_id import get_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # Django logs 4xx/5xx responses after the middleware has left: the request still knows its id.
            request_id = getattr(getattr(record, "request", None), "request_id", "")
            record.request_id = get_request_id() or (request_id if isinstance(request_id, str) else "")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        for name, field in (("status", "status_code"), ("duration_ms", "duration_ms")):
            value = getattr(record, field, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
