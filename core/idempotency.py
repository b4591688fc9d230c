"""Idempotency-Key for POST: the first response is stored and replayed to retries of the same request.

A key is claimed in its own committed row first (so a concurrent retry sees it "in progress" and gets
409), then the request runs in a transaction that also stores its response. Either both the write and
the stored response commit, or neither does. A claim left behind by a crashed process is therefore
safe to take over once it is older than NUCLEUS_IDEMPOTENCY_STALE_SECONDS, which must exceed the
server's request timeout (gunicorn's is 60 s here). Every claim carries its own id, so a request whose
claim was taken over can neither complete nor release the new owner's claim.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import BadRequest, Conflict, ValidationFailed
from core.models import IdempotencyKey, IdempotencyState

MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = ("ETag", "Location")
# Refusals that a retry may well not repeat: never stored, so a retry runs again.
TRANSIENT_CODES = frozenset({"concurrent_write", "idempotency_in_progress"})
PURGE_BATCH = 100


class IdempotencyKeyReused(ValidationFailed):
    """The key was first used for a different request: a 422 with a title of its own."""

    code, title = "idempotency_key_reused", "Idempotency key reused"


@dataclass(frozen=True)
class Claimed:
    """The outcome of a claim: either this request owns `claim`, or `entry` is to be replayed."""

    claim: uuid.UUID | None = None
    entry: IdempotencyKey | None = None

    @property
    def replay(self) -> bool:
        return self.entry is not None


def request_fingerprint(*, method: str, path: str, data, if_match: str | None = None) -> str:
    """What makes two requests "the same": method, path (trailing slash or not), body and If-Match."""
    canonical = json.dumps(
        [method, path.rstrip("/"), data, if_match],
        sort_keys=True,
        separators=(",", ":"),
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
            code="invalid_idempotency_key",
        )
    return key


def _purge_expired(now) -> None:
    """Delete a bounded batch of expired keys, so that the table does not grow without end."""
    expired = list(
        IdempotencyKey.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:PURGE_BATCH]
    )
    if expired:
        IdempotencyKey.objects.filter(pk__in=expired, expires_at__lte=now).delete()


def idempotency_claim(*, scope: str, key: str, request_hash: str) -> Claimed:
    """Claim key for this request, or return the stored entry to replay; 409/422 otherwise."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.NUCLEUS_IDEMPOTENCY_STALE_SECONDS)
    claim = uuid.uuid4()
    with transaction.atomic():
        _purge_expired(now)
        IdempotencyKey.objects.filter(scope=scope, key=key, expires_at__lte=now).delete()
        IdempotencyKey.objects.filter(
            scope=scope, key=key, state=IdempotencyState.IN_PROGRESS, created_at__lte=stale
        ).delete()
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    scope=scope,
                    key=key,
                    claim=claim,
                    request_hash=request_hash,
                    state=IdempotencyState.IN_PROGRESS,
                    created_at=now,
                    expires_at=now + timedelta(hours=settings.NUCLEUS_IDEMPOTENCY_TTL_HOURS),
                )
            return Claimed(claim=claim)
        except IntegrityError:
            pass
        entry = IdempotencyKey.objects.filter(scope=scope, key=key).first()
    if entry is None:  # released between our insert and our read: the caller may simply retry
        raise Conflict(
            "A request with this Idempotency-Key just finished; retry.", code="idempotency_in_progress"
        )
    if entry.request_hash != request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was used for a different request.")
    if entry.state == IdempotencyState.IN_PROGRESS:
        raise Conflict(
            "A request with this Idempotency-Key is still in progress; retry later.",
            code="idempotency_in_progress",
        )
    return Claimed(entry=entry)


def idempotency_complete(*, claim: uuid.UUID, response) -> None:
    """Store the response of the claimed request (inside its transaction when it succeeded)."""
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    if response.content_type:  # set explicitly on problem responses; others are negotiated again
        headers["Content-Type"] = response.content_type
    IdempotencyKey.objects.filter(claim=claim, state=IdempotencyState.IN_PROGRESS).update(
        state=IdempotencyState.COMPLETED,
        response_status=response.status_code,
        response_body=json.dumps(response.data, cls=DjangoJSONEncoder),
        response_headers=headers,
    )


def idempotency_release(*, claim: uuid.UUID) -> None:
    """Forget an in-progress claim whose request failed transiently, so that a retry runs it again."""
    IdempotencyKey.objects.filter(claim=claim, state=IdempotencyState.IN_PROGRESS).delete()
