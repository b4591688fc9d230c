"""What every Nucleus API view shares: the caller, conditional headers, paging, idempotent POSTs."""

import functools
import re

from django.conf import settings
from django.db import transaction
from django.http import QueryDict
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import BadRequest
from core.idempotency import (
    REPLAYED_HEADERS,
    check_key,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
    request_fingerprint,
)
from core.principals import Actor, Principal

_ETAG = re.compile(r'\s*(?:W/)?"([^"]*)"\s*|\s*([0-9]+)\s*')


class ProblemJSONRenderer(JSONRenderer):
    """Lets clients that accept only application/problem+json still get answers."""

    media_type = "application/problem+json"


def parse_etags(value: str | None):
    """An If-Match / If-None-Match header as None, "*", or the set of versions it names."""
    if value is None:
        return None
    if value.strip() == "*":
        return "*"
    versions = set()
    for part in value.split(","):
        match = _ETAG.fullmatch(part)
        if not match:
            raise BadRequest(f'{value!r} is not a list of ETags such as "3".', code="invalid_etag")
        text = match.group(1) if match.group(1) is not None else match.group(2)
        if text.isdigit():
            versions.add(int(text))
    return frozenset(versions)


def etag(version: int) -> str:
    return f'"{version}"'


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
        if not raw.isdigit() or not 1 <= int(raw) <= settings.NUCLEUS_MAX_PAGE_SIZE:
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

    def body_object(self) -> dict:
        data = self.request.data
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.", code="body_not_object")
        return data

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            self.post = functools.partial(self._idempotent, self.post, check_key(key))

    def _idempotent(self, handler, key: str, request, *args, **kwargs):
        scope = self.principal.label
        fingerprint = request_fingerprint(method=request.method, path=request.path, data=request.data)
        stored = idempotency_claim(scope=scope, key=key, request_hash=fingerprint)
        if stored is not None:
            headers = {**stored.response_headers, "Idempotent-Replayed": "true"}
            return Response(stored.response_body, status=stored.response_status, headers=headers)
        try:
            with transaction.atomic():
                response = handler(request, *args, **kwargs)
                if response.status_code >= 400:
                    raise _NotStored(response)
                headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
                idempotency_complete(
                    scope=scope, key=key, status=response.status_code, body=response.data, headers=headers
                )
        except _NotStored as failed:
            idempotency_release(scope=scope, key=key)
            return failed.response
        except BaseException:
            idempotency_release(scope=scope, key=key)
            raise
        return response


class _NotStored(Exception):
    def __init__(self, response):
        super().__init__()
        self.response = response
