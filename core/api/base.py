"""What every Nucleus API view shares: the caller, conditional headers, paging, idempotent POSTs."""

import functools
import json
import re

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, QueryDict
from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import BadRequest
from core.idempotency import (
    TRANSIENT_CODES,
    check_key,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
    request_fingerprint,
)
from core.principals import Actor, Principal

_SMALL_INT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() also accepts "²"
_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*|\s*([0-9]+)\s*')


class ProblemJSONRenderer(JSONRenderer):
    """Lets clients that accept only application/problem+json still get answers."""

    media_type = "application/problem+json"


def parse_etags(value: str | None, *, weak: bool = False):
    """An If-Match / If-None-Match header as None, "*", or the set of versions it names.

    If-Match compares strongly (RFC 9110): a weak tag W/"3" matches nothing. If-None-Match compares
    weakly (weak=True). A bare number is read as the tag of that version, for lenient clients.
    """
    if value is None:
        return None
    if value.strip() == "*":
        return "*"
    versions = set()
    for part in value.split(","):
        match = _ETAG.fullmatch(part)
        if not match:
            raise BadRequest(f'{value!r} is not a list of ETags such as "3".', code="invalid_etag")
        is_weak, quoted, bare = match.groups()
        text = quoted if quoted is not None else bare
        if (weak or not is_weak) and text.isascii() and text.isdigit() and len(text) <= 18:
            versions.add(int(text))
    return frozenset(versions)


def etag(version: int) -> str:
    return f'"{version}"'


@functools.cache
def _encoder() -> json.JSONEncoder:
    """The encoder JSONRenderer makes for every body, made once: a page encodes each row on its own."""
    renderer = JSONRenderer()
    return renderer.encoder_class(
        ensure_ascii=renderer.ensure_ascii,
        allow_nan=not renderer.strict,
        separators=SHORT_SEPARATORS if renderer.compact else LONG_SEPARATORS,
    )


def encode_json(value) -> bytes:
    """value as the API's JSON renderer writes a response body: the bytes a page's budget counts."""
    text = _encoder().encode(value)
    # As JSONRenderer does: valid JSON, but JavaScript string literals may not hold them raw.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


class NucleusAPIView(APIView):
    renderer_classes = [JSONRenderer, ProblemJSONRenderer]

    @property
    def principal(self) -> Principal:
        return self.request.user

    @property
    def actor(self) -> Actor:
        return Actor.for_principal(self.principal, getattr(self.request._request, "request_id", ""))

    def header_if_match(self):
        return parse_etags(self.request.headers.get("If-Match"))

    def query_limit(self) -> int:
        raw = self.request.query_params.get("limit")
        if raw is None:
            return settings.NUCLEUS_DEFAULT_PAGE_SIZE
        if not _SMALL_INT.fullmatch(raw) or not 1 <= int(raw) <= settings.NUCLEUS_MAX_PAGE_SIZE:
            raise BadRequest(
                f"limit must be an integer from 1 to {settings.NUCLEUS_MAX_PAGE_SIZE}.", code="invalid_limit"
            )
        return int(raw)

    def next_url(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        params: QueryDict = self.request.query_params.copy()
        params["cursor"] = cursor
        return self.request.build_absolute_uri(f"{self.request.path}?{params.urlencode()}")

    def page_response(self, items: list[bytes], **members) -> HttpResponse:
        """{"results": [items...], **members}, from items encoded one by one (pages.read_page).

        Joining the items as encoded, instead of rendering the page again, encodes each row once and
        never holds the page as Python objects.
        """
        body = b"".join([b'{"results":[', b",".join(items), b"],", encode_json(members)[1:]])
        return HttpResponse(body, content_type=self.request.accepted_renderer.media_type)

    def body_object(self) -> dict:
        data = self.request.data
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.", code="body_not_object")
        return data

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        # DRF keeps the response on the view, which its request refers back to: a reference cycle
        # that would hold a page's body in memory until the garbage collector next runs.
        del self.response
        return response

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None and hasattr(self, "post"):
            self.post = functools.partial(self._idempotent, self.post, check_key(key))

    def _idempotent(self, handler, idempotency_key: str, request, /, *args, **kwargs):
        """Run a POST at most once per Idempotency-Key; retries get the first response again.

        Successful responses are stored in the request's own transaction; refusals (4xx) are stored
        after it rolled back. Transient failures (5xx, a concurrent-write 409) are not stored, so a
        retry runs again.
        """
        scope = self.principal.label
        fingerprint = request_fingerprint(
            method=request.method,
            path=request.path,
            data=request.data,
            if_match=request.headers.get("If-Match"),
        )
        claimed = idempotency_claim(scope=scope, key=idempotency_key, request_hash=fingerprint)
        if claimed.replay:
            entry = claimed.entry
            headers = {
                name: value for name, value in entry.response_headers.items() if name != "Content-Type"
            }
            headers["Idempotent-Replayed"] = "true"
            return Response(
                json.loads(entry.response_body) if entry.response_body else None,
                status=entry.response_status,
                headers=headers,
                content_type=entry.response_headers.get("Content-Type"),
            )
        try:
            with transaction.atomic():
                try:
                    response = handler(request, *args, **kwargs)
                except Exception as exc:
                    raise _NotStored(self.handle_exception(exc))
                if response.status_code >= 400:
                    raise _NotStored(response)
                idempotency_complete(claim=claimed.claim, response=response)
        except _NotStored as failed:
            if _replayable(failed.response):
                idempotency_complete(claim=claimed.claim, response=failed.response)
            else:
                idempotency_release(claim=claimed.claim)
            return failed.response
        except BaseException:
            idempotency_release(claim=claimed.claim)
            raise
        return response


def _replayable(response) -> bool:
    """A refusal that a retry would only repeat: stored and replayed like a success."""
    data = response.data if isinstance(response.data, dict) else {}
    return (
        response.status_code < 500 and response.status_code != 429 and data.get("code") not in TRANSIENT_CODES
    )


class _NotStored(Exception):
    def __init__(self, response):
        super().__init__()
        self.response = response
