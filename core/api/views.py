"""The core HTTP API: collections, grants and records. Views parse and shape; services decide."""

import asyncio
import contextvars
import json
import re
import time
from dataclasses import dataclass

from django.db import close_old_connections
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from core import long_polls, pages, selectors, services
from core.api import serializers as s
from core.api.base import NucleusAPIView, encode_json, etag, parse_etags
from core.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from core.history import history_page
from core.models import Collection, CollectionKind, Event, Record, Service, record_pk
from core.selectors import Need
from core.validation import check_record_data
from schemas.models import Schema

# --- shared documentation ------------------------------------------------------------------------


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(s.ProblemSerializer, description=description)


COMMON_ERRORS = {
    400: _problem("Malformed request: bad JSON, bad header or query parameter."),
    401: _problem("No valid token or operator session."),
    404: _problem("Not found, or not visible to the caller."),
    406: _problem("The Accept header allows no JSON."),
    429: _problem("Over the service's request rate; Retry-After says when to try again."),
    503: _problem("The database is unavailable or timed out; nothing was written. Retry-After says when."),
}
WRITE_ERRORS = {
    **COMMON_ERRORS,
    403: _problem("Visible to the caller, but not writable by it."),
    409: _problem("Conflict with the current state (see code)."),
    413: _problem("Request body over 10 MiB."),
    415: _problem("The body is not application/json."),
    422: _problem("Validation failed: errors point into the body."),
}
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~][ -~]*$"},
    OpenApiParameter.HEADER,
    description="At most 255 characters. A retry with the same key and request replays the first "
    "response with Idempotent-Replayed: true; a different request with the same key gets 422; "
    "409 while the first runs.",
)
IF_MATCH = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, description='The expected version, e.g. "3", or *.'
)
# The key `bulk` is reserved: /records/bulk/ is the bulk endpoint, which only takes POST.
BULK_KEY = {405: _problem("The key 'bulk' is reserved: /records/bulk/ is the bulk endpoint (POST only).")}
LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": 1000},
    description="Page size, 1 to 1000 (default 100).",
)
CURSOR = OpenApiParameter("cursor", OpenApiTypes.STR, description="The opaque cursor from `next`.")


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def record_body(record: Record, collection_name: str) -> dict:
    """The API representation of a record (its shape is documented by RecordSerializer)."""
    return {
        "collection": collection_name,
        "key": record.key,
        "data": record.data,
        "version": record.version,
        "schema_version": record.schema_version,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "created_by": record.created_by,
        "updated_by": record.updated_by,
    }


def _validated(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- collections ---------------------------------------------------------------------------------


class CollectionListView(NucleusAPIView):
    @extend_schema(
        operation_id="collections_list",
        parameters=[LIMIT, CURSOR],
        responses={200: s.CollectionPageSerializer, **COMMON_ERRORS},
    )
    def get(self, request):
        selectors.require_operator_perms(self.principal, ("core.view_collection",))
        limit = self.query_limit()
        collections = selectors.collections_visible_to(principal=self.principal).order_by("name")
        cursor = request.query_params.get("cursor")
        if cursor:
            (after,) = pages.decode_cursor(cursor, 1)
            collections = collections.filter(name__gt=after)
        page = list(collections[: limit + 1])
        next_cursor = pages.encode_cursor([page[limit - 1].name]) if len(page) > limit else None
        results = s.CollectionSerializer(page[:limit], many=True).data
        return Response({"results": results, "next": self.next_url(next_cursor)})

    @extend_schema(
        operation_id="collections_create",
        request=s.CollectionCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.CollectionSerializer, **WRITE_ERRORS},
    )
    def post(self, request):
        data = _validated(s.CollectionCreateSerializer, request.data)
        owner_name = data.pop("owner", None)
        if self.principal.service is not None:
            if owner_name not in (None, self.principal.service.name):
                raise ValidationFailed(
                    "A service creates collections for itself; owner is for operators.",
                    errors=[{"path": "/owner", "message": "must be omitted or your own service name."}],
                )
            owner = self.principal.service
        else:
            selectors.require_operator_perms(self.principal, ("core.add_collection",))
            owner = Service.objects.filter(name=owner_name).first() if owner_name else None
            if owner is None:
                raise ValidationFailed(
                    "Operators must name the owning service in owner.",
                    errors=[{"path": "/owner", "message": "must name an existing service."}],
                )
        if "schema" in data:
            data["schema"] = _schema_named(data["schema"])
        if "change_stream" in data:
            if data["change_stream"] is not None:
                services.check_change_stream_kind(data.get("kind", CollectionKind.RECORDS))
            data["change_stream"] = _stream_named(data["change_stream"])
        collection = services.collection_create(owner=owner, actor=self.actor, **data)
        location = request.build_absolute_uri(reverse("collection-detail", args=[collection.name]))
        return Response(s.CollectionSerializer(collection).data, status=201, headers={"Location": location})


class CollectionDetailView(NucleusAPIView):
    @extend_schema(
        operation_id="collections_retrieve", responses={200: s.CollectionSerializer, **COMMON_ERRORS}
    )
    def get(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_collection",)
        )
        return Response(s.CollectionSerializer(collection).data)

    @extend_schema(
        operation_id="collections_update",
        request=s.CollectionUpdateSerializer,
        responses={200: s.CollectionSerializer, **WRITE_ERRORS},
    )
    def patch(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.MANAGE, perms=("core.change_collection",)
        )
        data = _validated(s.CollectionUpdateSerializer, request.data)
        if "schema" in data:
            data["schema"] = _schema_named(data["schema"])
        if "change_stream" in data:
            data["change_stream"] = _stream_named(data["change_stream"])
        collection = services.collection_update(collection=collection, actor=self.actor, **data)
        return Response(s.CollectionSerializer(collection).data)

    @extend_schema(
        operation_id="collections_destroy",
        responses={
            204: None,
            **COMMON_ERRORS,
            403: WRITE_ERRORS[403],
            409: _problem("The collection is not empty."),
        },
    )
    def delete(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.MANAGE, perms=("core.delete_collection",)
        )
        # An operator may delete a collection that still holds records only with delete_record too.
        force = self.principal.is_operator and self.principal.user.has_perm("core.delete_record")
        services.collection_delete(collection=collection, actor=self.actor, force=force)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- grants --------------------------------------------------------------------------------------


class GrantListView(NucleusAPIView):
    @extend_schema(
        operation_id="grants_list",
        responses={200: s.GrantPageSerializer, **COMMON_ERRORS, 403: WRITE_ERRORS[403]},
    )
    def get(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.MANAGE, perms=("core.view_grant",)
        )
        grants = collection.grants.select_related("service", "collection").order_by("service__name")
        return Response({"results": s.GrantSerializer(grants, many=True).data, "next": None})

    @extend_schema(
        operation_id="grants_set",
        request=s.GrantWriteSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={200: s.GrantSerializer, 201: s.GrantSerializer, **WRITE_ERRORS},
    )
    def post(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal,
            name=name,
            need=Need.MANAGE,
            perms=("core.add_grant", "core.change_grant"),
        )
        data = _validated(s.GrantWriteSerializer, request.data)
        grant, created = services.grant_set(
            collection=collection, service_name=data["service"], access=data["access"], actor=self.actor
        )
        return Response(s.GrantSerializer(grant).data, status=201 if created else 200)


class GrantDetailView(NucleusAPIView):
    @extend_schema(
        operation_id="grants_destroy", responses={204: None, **COMMON_ERRORS, 403: WRITE_ERRORS[403]}
    )
    def delete(self, request, name, service):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.MANAGE, perms=("core.delete_grant",)
        )
        services.grant_revoke(collection=collection, service_name=service, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- records -------------------------------------------------------------------------------------


class RecordListView(NucleusAPIView):
    @extend_schema(
        operation_id="records_list",
        parameters=[
            OpenApiParameter(
                "where", OpenApiTypes.STR, description="A JSON object: records whose data contains it."
            ),
            OpenApiParameter("key_prefix", OpenApiTypes.STR),
            OpenApiParameter("updated_after", OpenApiTypes.DATETIME),
            OpenApiParameter("updated_before", OpenApiTypes.DATETIME),
            OpenApiParameter("ordering", OpenApiTypes.STR, enum=list(selectors.ORDERINGS)),
            LIMIT,
            CURSOR,
        ],
        responses={200: s.RecordPageSerializer, **COMMON_ERRORS},
    )
    def get(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_record",)
        )
        params = request.query_params
        records, cursor = selectors.records_page(
            collection=collection,
            limit=self.query_limit(),
            encode=lambda record: encode_json(record_body(record, collection.name)),
            cursor=params.get("cursor"),
            ordering=params.get("ordering", "key"),
            where=_where(params.get("where")),
            key_prefix=params.get("key_prefix"),
            updated_after=params.get("updated_after"),
            updated_before=params.get("updated_before"),
        )
        return self.page_response(records, next=self.next_url(cursor))

    @extend_schema(
        operation_id="records_create",
        request=s.RecordCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.RecordSerializer, **WRITE_ERRORS},
    )
    def post(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.WRITE, perms=("core.add_record",)
        )
        body = _strict_body(self.body_object(), required={"data"}, optional={"key"})
        record = services.record_create(
            collection=collection, key=body.get("key"), data=body["data"], actor=self.actor
        )
        return _record_response(request, record, collection.name, status.HTTP_201_CREATED, location=True)


class RecordDetailView(NucleusAPIView):
    @extend_schema(
        operation_id="records_retrieve",
        parameters=[OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={
            200: s.RecordSerializer,
            304: OpenApiResponse(description="Not modified."),
            **COMMON_ERRORS,
            **BULK_KEY,
        },
    )
    def get(self, request, name, key):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_record",)
        )
        record = selectors.record_get(collection=collection, key=key)
        if_none_match = parse_etags(request.headers.get("If-None-Match"), weak=True)
        if if_none_match == "*" or (if_none_match and record.version in if_none_match):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(record.version)})
        return _record_response(request, record, collection.name, status.HTTP_200_OK)

    @extend_schema(
        operation_id="records_replace",
        request=s.RecordDataSerializer,
        parameters=[IF_MATCH, OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={
            200: s.RecordSerializer,
            201: s.RecordSerializer,
            **WRITE_ERRORS,
            412: _problem("If-Match or If-None-Match did not hold; nothing was written."),
            428: _problem("The collection requires If-Match."),
            **BULK_KEY,
        },
    )
    def put(self, request, name, key):
        collection = selectors.collection_for(
            principal=self.principal,
            name=name,
            need=Need.WRITE,
            perms=("core.add_record", "core.change_record"),
        )
        body = _strict_body(self.body_object(), required={"data"})
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and if_none_match.strip() != "*":
            raise BadRequest("PUT supports only If-None-Match: *.", code="invalid_etag")
        record, created = services.record_put(
            collection=collection,
            key=key,
            data=body["data"],
            actor=self.actor,
            if_match=self.header_if_match(),
            if_none_match=if_none_match is not None,
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return _record_response(request, record, collection.name, code, location=created)

    @extend_schema(
        operation_id="records_patch",
        request=s.RecordDataSerializer,
        parameters=[IF_MATCH],
        responses={
            200: s.RecordSerializer,
            **WRITE_ERRORS,
            412: _problem("If-Match did not hold; nothing was written."),
            428: _problem("The collection requires If-Match."),
            **BULK_KEY,
        },
    )
    def patch(self, request, name, key):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.WRITE, perms=("core.change_record",)
        )
        body = _strict_body(self.body_object(), required={"data"})
        record = services.record_patch(
            collection=collection,
            key=key,
            patch=body["data"],
            actor=self.actor,
            if_match=self.header_if_match(),
        )
        return _record_response(request, record, collection.name, status.HTTP_200_OK)

    @extend_schema(
        operation_id="records_destroy",
        parameters=[IF_MATCH],
        responses={
            204: None,
            **COMMON_ERRORS,
            403: WRITE_ERRORS[403],
            412: _problem("If-Match did not hold; nothing was deleted."),
            428: _problem("The collection requires If-Match."),
            **BULK_KEY,
        },
    )
    def delete(self, request, name, key):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.WRITE, perms=("core.delete_record",)
        )
        services.record_delete(
            collection=collection, key=key, actor=self.actor, if_match=self.header_if_match()
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecordBulkView(NucleusAPIView):
    @extend_schema(
        operation_id="records_bulk",
        request=s.BulkRequestSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            200: s.BulkResultSerializer,
            201: s.BulkResultSerializer,
            **WRITE_ERRORS,
            428: _problem("Upsert would replace records of a collection that requires If-Match."),
        },
    )
    def post(self, request, name):
        collection = selectors.collection_for(
            principal=self.principal,
            name=name,
            need=Need.WRITE,
            perms=("core.add_record", "core.change_record"),
        )
        body = _strict_body(self.body_object(), required={"mode", "records"})
        items = services.records_bulk(
            collection=collection, mode=body["mode"], items=body["records"], actor=self.actor
        )
        results = [{"key": item.key, "version": item.version, "created": item.created} for item in items]
        all_created = all(item.created for item in items)
        return Response(
            {"results": results}, status=status.HTTP_201_CREATED if all_created else status.HTTP_200_OK
        )


class RecordHistoryView(NucleusAPIView):
    @extend_schema(
        operation_id="records_history",
        parameters=[LIMIT, CURSOR],
        responses={200: s.HistoryPageSerializer, **COMMON_ERRORS},
    )
    def get(self, request, name, key):
        collection = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_record",)
        )
        selectors.require_records(collection)
        cursor = request.query_params.get("cursor")
        before = pages.decode_cursor_position(cursor) if cursor else None
        entries, next_before = history_page(
            record_pk(collection.pk, key),
            limit=self.query_limit(),
            encode=lambda entry: encode_json({**entry, "changed_at": iso(entry["changed_at"])}),
            before=before,
        )
        if not entries and before is None:
            raise NotFound(f"Record {key!r} has no history in {collection.name!r}.", code="record_not_found")
        next_cursor = pages.encode_cursor([str(next_before)]) if next_before else None
        return self.page_response(entries, next=self.next_url(next_cursor))


class RecordRevertView(NucleusAPIView):
    @extend_schema(
        operation_id="records_revert",
        request=s.RevertSerializer,
        parameters=[IF_MATCH, IDEMPOTENCY_HEADER],
        responses={
            200: s.RecordSerializer,
            201: s.RecordSerializer,
            **WRITE_ERRORS,
            412: _problem("If-Match did not hold; nothing was written."),
            428: _problem("The collection requires If-Match."),
        },
    )
    def post(self, request, name, key):
        collection = selectors.collection_for(
            principal=self.principal,
            name=name,
            need=Need.WRITE,
            perms=("core.add_record", "core.change_record"),
        )
        data = _validated(s.RevertSerializer, request.data)
        record, created = services.record_revert(
            collection=collection,
            key=key,
            version=data["version"],
            actor=self.actor,
            if_match=self.header_if_match(),
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return _record_response(request, record, collection.name, code, location=created)


# --- helpers -------------------------------------------------------------------------------------


def _record_response(
    request, record: Record, collection_name: str, code: int, location: bool = False
) -> Response:
    headers = {"ETag": etag(record.version)}
    if location:
        url = reverse("record-detail", args=[collection_name, record.key])
        headers["Location"] = request.build_absolute_uri(url)
    return Response(record_body(record, collection_name), status=code, headers=headers)


def _strict_body(
    body: dict, *, required: set[str], optional: frozenset[str] | set[str] = frozenset()
) -> dict:
    errors = [
        {"path": f"/{name}", "message": "unknown field."}
        for name in sorted(set(body) - required - set(optional))
    ]
    errors += [{"path": f"/{name}", "message": "is required."} for name in sorted(required - set(body))]
    if errors:
        raise ValidationFailed("The request body is invalid.", errors=errors)
    return body


def _schema_named(name: str | None) -> Schema | None:
    if name is None:
        return None
    schema = Schema.objects.filter(name=name).first()
    if schema is None:
        raise ValidationFailed(
            f"There is no schema named {name!r}.",
            code="unknown_schema",
            errors=[{"path": "/schema", "message": "no such schema."}],
        )
    return schema


def _stream_named(name: str | None) -> Collection | None:
    if name is None:
        return None
    stream = Collection.objects.filter(name=name).first()
    if stream is None:  # worded as for another service's stream, so that the answer does not tell them apart
        raise ValidationFailed(
            f"{name!r} is not a stream of the same owner.",
            code="invalid_change_stream",
            errors=[
                {"path": "/change_stream", "message": "must name a stream collection of the same owner."}
            ],
        )
    return stream


def _where(raw: str | None) -> dict | None:
    if raw is None or raw == "":
        return None
    try:
        where = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest('where must be a JSON object, e.g. where={"status":"open"}.', code="invalid_filter")
    if not isinstance(where, dict):
        raise BadRequest('where must be a JSON object, e.g. where={"status":"open"}.', code="invalid_filter")
    try:  # what no record can hold (NUL, lone surrogates, ...) would make the database fail the query
        check_record_data(where, path="where")
    except ValidationFailed as exc:
        raise BadRequest(exc.detail, code="invalid_filter")
    return where


# --- streams -------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[0-9]{1,18}")
_SECONDS = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?")


def _query_int(request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _NUMBER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer >= 0.", code=f"invalid_{name}")
    return int(raw)


def _query_wait(request) -> float:
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return 0.0
    if not _SECONDS.fullmatch(raw) or float(raw) > MAX_WAIT_SECONDS:
        raise BadRequest(
            f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}.", code="invalid_wait"
        )
    return float(raw)


MAX_WAIT_SECONDS = 30


def event_body(event: Event) -> dict:
    return {
        "offset": event.offset,
        "id": str(event.event_id),
        "type": event.type,
        "data": event.data,
        "producer": event.producer,
        "created_at": iso(event.created_at),
    }


class EventListView(NucleusAPIView):
    @extend_schema(
        operation_id="events_list",
        parameters=[
            OpenApiParameter(
                "after", OpenApiTypes.INT, description="Events with offset > after (default 0)."
            ),
            LIMIT,
            OpenApiParameter(
                "wait",
                OpenApiTypes.NUMBER,
                description="Long-poll up to this many seconds (0 to 30) for an event.",
            ),
        ],
        responses={
            200: s.EventPageSerializer,
            **COMMON_ERRORS,
            429: _problem(
                "Over the service's request rate, or (too_many_long_polls) holding as many waiting "
                "long-polls as one caller may; Retry-After says when to try again."
            ),
            503: _problem(
                "The database is unavailable or timed out, or (long_polls_exhausted) the server holds as "
                "many waiting long-polls as it may; Retry-After says when to try again."
            ),
        },
    )
    def get(self, request, name):
        stream = self._readable_stream(name)
        after, limit, wait = _query_int(request, "after", 0), self.query_limit(), _query_wait(request)
        if wait > 0 and self.hand_off_wait:
            return self._first_look(stream, after, limit, wait)
        if "asgi.scope" in request.META:
            # On the ASGI server's request threads (nucleus_project/asgi.py routes every long-poll it
            # recognises to the event loop): a thread never waits here, whatever reached it.
            wait = 0
        page = self._read(stream, after, limit)
        if not page[0] and wait > 0:
            selectors.wait_for_events(stream=stream, after=after, timeout=wait, caller=self.principal.label)
            page = self._read(stream, after, limit)
        return self._page(*page)

    # Under the ASGI server (nucleus_project/asgi.py) a long-poll is served by events_long_poll: this
    # view makes its checks and first read on a worker thread and hands the wait to the event loop.
    hand_off_wait = False
    long_poll: "LongPoll | None" = None

    def _readable_stream(self, name: str) -> Collection:
        return selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_event",)
        )

    def _read(self, stream: Collection, after: int, limit: int) -> tuple[list[bytes], int, int]:
        """The page's events encoded, its next_after and the stream's last offset (selectors.events_page)."""
        return selectors.events_page(
            stream=stream, after=after, limit=limit, encode=lambda event: encode_json(event_body(event))
        )

    def _page(self, events: list[bytes], next_after: int, last_offset: int) -> HttpResponse:
        return self.page_response(events, last_offset=last_offset, next_after=next_after)

    def _first_look(self, stream: Collection, after: int, limit: int, wait: float) -> Response:
        """The page, or, when it is empty, a subscription to wait on (self.long_poll) and no answer yet."""
        deadline = time.monotonic() + wait
        subscription = long_polls.stream_watcher().subscribe(
            stream_id=stream.pk, after=after, caller=self.principal.label
        )
        try:  # subscribed before the read: an append committed after it wakes the wait
            page = self._read(stream, after, limit)
        except BaseException:
            subscription.close()
            raise
        if page[0] or page[2] > after:  # events, or a stream truncated past after: answer now
            subscription.close()
            return self._page(*page)
        self.long_poll = LongPoll(subscription, stream.name, after, limit, deadline)
        return Response(status=status.HTTP_204_NO_CONTENT)  # never sent: events_long_poll answers

    def resume(self) -> tuple[Response, bool]:
        """After a handed-off wait: the page as it is now, with access checked again; and whether it
        has events. Errors become problems, as DRF's dispatch would make them."""
        poll = self.long_poll
        found = False
        try:
            stream = self._readable_stream(poll.stream_name)
            page = self._read(stream, poll.after, poll.limit)
            found = bool(page[0]) or page[2] > poll.after  # as wait_for_events: offsets moved on
            response = self._page(*page)
        except Exception as exc:
            response = self.handle_exception(exc)
        return self.finalize_response(self.request, response), found

    @extend_schema(
        operation_id="events_append",
        request=s.EventAppendSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            200: OpenApiResponse(
                s.AppendResultSerializer,
                description="Every event was already in the stream (a retry): nothing appended, "
                "first_offset and last_offset are null.",
            ),
            201: s.AppendResultSerializer,
            **WRITE_ERRORS,
            409: _problem(
                "expected_last_offset differs from the stream's last offset (unexpected_last_offset, "
                "last_offset says it), or an event reuses the id of another event (event_id_conflict, "
                "index names it)."
            ),
        },
    )
    def post(self, request, name):
        stream = selectors.collection_for(
            principal=self.principal, name=name, need=Need.WRITE, perms=("core.add_event",)
        )
        body = _strict_body(self.body_object(), required={"events"}, optional={"expected_last_offset"})
        appended = services.stream_append(
            stream=stream,
            events=body["events"],
            actor=self.actor,
            expected_last_offset=body.get("expected_last_offset"),
        )
        return Response(
            {
                "first_offset": appended.first_offset,
                "last_offset": appended.last_offset,
                "events": appended.results(),
            },
            status=status.HTTP_201_CREATED if appended.appended else status.HTTP_200_OK,
        )


SERVICE = OpenApiParameter(
    "service",
    {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$"},
    description="Whose consumer: your own by default. The stream's owner may name another service to "
    "read its consumer; operators may name any service (default: the stream's owner).",
)


def consumer_body(position, last_offset: int) -> dict:
    """The API representation of a consumer position (ConsumerPositionSerializer)."""
    return {
        "consumer": position.consumer,
        "service": position.owner.name,
        "offset": position.offset,
        "last_offset": last_offset,
        "lag": max(last_offset - position.offset, 0),
        "updated_at": iso(position.updated_at) if position.updated_at else None,
    }


class ConsumerListView(NucleusAPIView):
    @extend_schema(
        operation_id="consumers_list",
        parameters=[LIMIT, CURSOR],
        responses={200: s.ConsumerPageSerializer, **COMMON_ERRORS},
    )
    def get(self, request, name):
        stream = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_consumerposition",)
        )
        positions, cursor = selectors.consumers_page(
            principal=self.principal,
            stream=stream,
            limit=self.query_limit(),
            cursor=request.query_params.get("cursor"),
        )
        results = [consumer_body(position, position.stream_last_offset) for position in positions]
        return Response({"results": results, "next": self.next_url(cursor)})


@dataclass
class LongPoll:
    """A long-poll handed to the event loop: what it waits on, and what to read when woken."""

    subscription: long_polls.Subscription
    stream_name: str
    after: int
    limit: int
    deadline: float  # time.monotonic()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_long_poll_view = EventListView.as_view(hand_off_wait=True)


async def events_long_poll(request, name):
    """GET events with wait under the ASGI server: the checks and reads run on the worker's request
    threads (request.scope["nucleus.executor"]), the wait on the event loop, holding no thread and no
    database connection. A client that goes away cancels the wait, which closes its subscription."""
    executor = request.scope["nucleus.executor"]
    first = asyncio.ensure_future(on_request_thread(executor, _first_look, request, name))
    try:
        response, view = await asyncio.shield(first)
    except asyncio.CancelledError:  # the client left while the thread works: release what it subscribes
        first.add_done_callback(_release_abandoned)
        raise
    poll = getattr(view, "long_poll", None)
    if poll is None:
        return response
    watcher = poll.subscription.watcher
    with poll.subscription:
        while True:
            woken = await poll.subscription.wait_async(poll.remaining())
            poll.subscription.rearm()  # before reading: an append after the read wakes the next round
            response, found = await on_request_thread(executor, _resumed, view)
            if found or not woken or poll.remaining() <= 0 or watcher.closed:
                return response


def _first_look(request, name: str) -> tuple[Response, "EventListView | None"]:
    """The view's checks and first read; its response rendered here unless the view is to wait."""
    response = _long_poll_view(request, name=name)
    view = getattr(response, "renderer_context", {}).get("view")
    if getattr(view, "long_poll", None) is None and hasattr(response, "render"):
        response.render()  # a page is an HttpResponse, its body already encoded; a problem is rendered
    return response, view


def _release_abandoned(first: asyncio.Future) -> None:
    if first.cancelled() or first.exception() is not None:
        return
    _, view = first.result()
    if (poll := getattr(view, "long_poll", None)) is not None:
        poll.subscription.close()


def _resumed(view: EventListView) -> tuple[Response, bool]:
    response, found = view.resume()
    if hasattr(response, "render"):  # a problem; a page's body is already encoded
        response.render()
    return response, found


async def on_request_thread(executor, function, *args, **kwargs):
    """function(*args, **kwargs) on one of the worker's request threads, in this task's context.

    Obsolete or broken database connections are closed before and after, as Django does at the
    start and end of every request it serves on a thread.
    """

    def run():
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(executor, context.run, run)


class ConsumerDetailView(NucleusAPIView):
    def _owner(self, stream: Collection, consumer: str):
        return selectors.consumer_owner_for(
            principal=self.principal,
            stream=stream,
            consumer=consumer,
            service_name=self.request.query_params.get("service"),
        )

    @extend_schema(
        operation_id="consumers_retrieve",
        parameters=[SERVICE],
        responses={
            200: s.ConsumerPositionSerializer,
            **COMMON_ERRORS,
            404: _problem(
                "Not found, or not visible to the caller: the stream, or another service's consumer "
                "(consumer_not_found)."
            ),
            422: _problem("The consumer name does not follow the rules of record keys (invalid_key)."),
        },
    )
    def get(self, request, name, consumer):
        stream = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.view_consumerposition",)
        )
        owner, may_move = self._owner(stream, consumer)
        position = selectors.consumer_position_get(
            stream=stream, owner=owner, consumer=consumer, may_create=may_move
        )
        return Response(consumer_body(position, selectors.stream_last_offset(stream.pk)))

    @extend_schema(
        operation_id="consumers_update",
        parameters=[SERVICE],
        request=s.ConsumerUpdateSerializer,
        responses={
            200: s.ConsumerPositionSerializer,
            **WRITE_ERRORS,
            403: _problem(
                "The stream's owner naming another service: it may read that consumer, not move it."
            ),
            404: _problem(
                "Not found, or not visible to the caller: the stream, or another service's consumer "
                "(consumer_not_found)."
            ),
            409: _problem("Moving backwards without force."),
            422: _problem("Beyond the stream's last offset."),
        },
    )
    def put(self, request, name, consumer):
        stream = selectors.collection_for(
            principal=self.principal, name=name, need=Need.READ, perms=("core.change_consumerposition",)
        )
        owner, may_move = self._owner(stream, consumer)
        if not may_move:
            raise Forbidden(f"Only service {owner.name!r} or an operator may move its consumers.")
        body = _strict_body(self.body_object(), required={"offset"}, optional={"force"})
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise ValidationFailed(
                "force must be true or false.", errors=[{"path": "/force", "message": "must be a boolean."}]
            )
        position = services.consumer_position_set(
            stream=stream,
            owner=owner,
            consumer=consumer,
            offset=body["offset"],
            actor=self.actor,
            force=force,
        )
        position.owner = owner
        return Response(consumer_body(position, selectors.stream_last_offset(stream.pk)))


# --- transactions --------------------------------------------------------------------------------

_OP_PERMS = {
    "create": ("core.add_record",),
    "put": ("core.add_record", "core.change_record"),
    "patch": ("core.change_record",),
    "delete": ("core.delete_record",),
    "append": ("core.add_event",),
}


class TransactionView(NucleusAPIView):
    @extend_schema(
        operation_id="transactions_execute",
        request=s.TransactionRequestSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            200: s.TransactionResultSerializer,
            **WRITE_ERRORS,
            412: _problem("A precondition of the failing operation did not hold; `operation` names it."),
            428: _problem("An operation needs if_match on a collection that requires it."),
        },
    )
    def post(self, request):
        body = _strict_body(self.body_object(), required={"operations"})
        resolved: dict[tuple[str, str], Collection] = {}

        def resolve(name: str, op: str) -> Collection:
            # Checked once per collection and op: a transaction often repeats both a thousand times.
            if (name, op) not in resolved:
                resolved[name, op] = selectors.collection_for(
                    principal=self.principal, name=name, need=Need.WRITE, perms=_OP_PERMS[op]
                )
            return resolved[name, op]

        results = services.transaction_execute(
            operations=body["operations"], actor=self.actor, resolve=resolve
        )
        return Response({"results": results})
