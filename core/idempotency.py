"""Idempotency-Key for POST: the first completed response is stored and replayed to retries.

A key is claimed in its own committed row first (so a concurrent retry sees it "in progress" and gets
409), then the request runs in a transaction that also stores its response. Either both the write and
the stored response commit, or neither does; a claim left behind by a crashed process is therefore
safe to take over once it is older than NUCLEUS_IDEMPOTENCY_STALE_SECONDS.
"""

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import BadRequest, Conflict, ValidationFailed
from core.models import IdempotencyKey, IdempotencyState

MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = ("ETag", "Location")


def request_fingerprint(*, method: str, path: str, data) -> str:
    canonical = json.dumps([method, path, data], sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
            code="invalid_idempotency_key",
        )
    return key


def idempotency_claim(*, scope: str, key: str, request_hash: str) -> IdempotencyKey | None:
    """Claim key for this request (None), or return the completed entry to replay; 409/422 otherwise."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.NUCLEUS_IDEMPOTENCY_STALE_SECONDS)
    with transaction.atomic():
        IdempotencyKey.objects.filter(scope=scope, key=key).filter(expires_at__lte=now).delete()
        IdempotencyKey.objects.filter(
            scope=scope, key=key, state=IdempotencyState.IN_PROGRESS, created_at__lte=stale
        ).delete()
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    scope=scope,
                    key=key,
                    request_hash=request_hash,
                    state=IdempotencyState.IN_PROGRESS,
                    created_at=now,
                    expires_at=now + timedelta(hours=settings.NUCLEUS_IDEMPOTENCY_TTL_HOURS),
                )
            return None
        except IntegrityError:
            pass
        entry = IdempotencyKey.objects.filter(scope=scope, key=key).first()
    if entry is None:  # released between our insert and our read: the caller may simply retry
        raise Conflict(
            "A request with this Idempotency-Key just finished; retry.", code="idempotency_in_progress"
        )
    if entry.request_hash != request_hash:
        raise ValidationFailed(
            "This Idempotency-Key was used for a different request.", code="idempotency_key_reused"
        )
    if entry.state == IdempotencyState.IN_PROGRESS:
        raise Conflict(
            "A request with this Idempotency-Key is still in progress; retry later.",
            code="idempotency_in_progress",
        )
    return entry


def idempotency_complete(*, scope: str, key: str, status: int, body, headers: dict) -> None:
    """Store the response of the claimed request; call inside the request's transaction."""
    IdempotencyKey.objects.filter(scope=scope, key=key).update(
        state=IdempotencyState.COMPLETED,
        response_status=status,
        response_body=json.loads(json.dumps(body, cls=DjangoJSONEncoder)),
        response_headers=headers,
    )


def idempotency_release(*, scope: str, key: str) -> None:
    """Forget an in-progress claim whose request failed, so that a retry runs it again."""
    IdempotencyKey.objects.filter(scope=scope, key=key, state=IdempotencyState.IN_PROGRESS).delete()
