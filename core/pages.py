"""Pages of a list: signed cursors, and rows read in chunks until a page passes its byte budget.

Shared by the lists of core and of the apps above it (schemas), so that none of them reaches into
another's selectors for them.
"""

from collections.abc import Callable
from contextlib import closing, nullcontext
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import connections, transaction
from django.db.models import Model, QuerySet

from core.errors import BadRequest

# Cursors are signed (HMAC with SECRET_KEY): Nucleus accepts only positions it handed out, so a
# forged or altered cursor cannot make it compare values of the caller's choosing.
_CURSOR_SIGNER_SALT = "nucleus.cursor"


def _cursor_signer() -> signing.Signer:
    return signing.Signer(salt=_CURSOR_SIGNER_SALT, sep=".")


def encode_cursor(values: list) -> str:
    """The opaque cursor of a page position: the values as base64url JSON, signed."""
    return _cursor_signer().sign_object(values)


def decode_cursor_position(cursor: str) -> int:
    """A cursor holding one position number (history, schema versions)."""
    (value,) = decode_cursor(cursor, 1)
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise BadRequest("cursor is not one that Nucleus issued.", code="invalid_cursor")
    return int(value)


def decode_cursor(cursor: str, length: int) -> list:
    """The `length` strings of a cursor Nucleus issued; a 400 invalid_cursor for any other cursor."""
    try:
        values = _cursor_signer().unsign_object(cursor) if cursor.isascii() else None
    except (signing.BadSignature, ValueError, RecursionError):
        values = None
    if not isinstance(values, list) or len(values) != length or not all(map(_comparable, values)):
        raise BadRequest("cursor is not one that Nucleus issued.", code="invalid_cursor")
    return values


def _comparable(value) -> bool:
    """A string the database can compare: PostgreSQL's text holds no NUL, UTF-8 no lone surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Page:
    """A page of rows as their callers encoded them, and where it ended."""

    items: list[bytes]
    last: Model | None  # the last row on the page: the next page starts after it
    more: bool  # rows follow the page


def read_page(queryset: QuerySet, *, limit: int, encode: Callable[[Model], bytes], row_bytes: int) -> Page:
    """Up to limit rows of the ordered queryset, each encoded as it arrives, ending once past the budget.

    A page ends after the row that takes its encoded size past NUCLEUS_PAGE_MAX_BYTES, so it always
    holds at least one row. Rows are fetched a budget's worth of the largest ones (row_bytes) at a
    time, so a worker holds one page's bytes and one fetch, never limit rows at once. One query.
    """
    budget = settings.NUCLEUS_PAGE_MAX_BYTES
    chunk = max(1, min(limit + 1, budget // row_bytes))
    queryset = queryset[: limit + 1]
    if connections[queryset.db].vendor == "postgresql":
        # A server-side cursor, so that PostgreSQL sends rows as they are fetched instead of the whole
        # result at once. Inside a transaction of its own it is declared WITHOUT HOLD (nothing is
        # materialised at commit) and cannot outlive the transaction, which keeps it safe behind a
        # pooler in transaction mode too: hence chunked whatever DISABLE_SERVER_SIDE_CURSORS says,
        # through the method QuerySet.iterator() calls after reading that setting.
        reading = transaction.atomic(using=queryset.db, savepoint=False)
        fetched = queryset._iterator(True, chunk)
    else:
        # SQLite steps through the result as rows are fetched; a transaction would take its write lock.
        reading = nullcontext()
        fetched = queryset.iterator(chunk_size=chunk)
    items, last, more, size = [], None, False, 0
    with reading, closing(fetched):
        for row in fetched:
            if len(items) == limit or size > budget:
                more = True
                break
            item = encode(row)
            items.append(item)
            size += len(item)
            last = row
    return Page(items=items, last=last, more=more)
