"""The schema registry API and the migration status of the system."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from core.api.base import NucleusAPIView, encode_json
from core.api.views import (
    COMMON_ERRORS,
    CURSOR,
    IDEMPOTENCY_HEADER,
    LIMIT,
    WRITE_ERRORS,
    _problem,
    _validated,
)
from core.errors import Forbidden, ValidationFailed
from core.models import Service
from core.pages import decode_cursor, encode_cursor
from schemas import selectors, services
from schemas.api import serializers as s
from schemas.models import Schema

FORBIDDEN = {403: _problem("Only the schema's owner or an operator may do this.")}
TOO_LARGE = {
    413: _problem(
        "Request body over 10 MiB, or a definition over NUCLEUS_SCHEMA_MAX_BYTES (schema_too_large)."
    )
}


def _require_owner(view: NucleusAPIView, schema: Schema, perm: str) -> None:
    principal = view.principal
    if principal.service is None:
        if not principal.user.has_perm(perm):
            raise Forbidden(f"Your account lacks the permission {perm}.")
        return
    if schema.owner_id != principal.service.pk:
        raise Forbidden(f"Only the owner of schema {schema.name!r} or an operator may do this.")


class SchemaListView(NucleusAPIView):
    @extend_schema(
        operation_id="schemas_list",
        parameters=[LIMIT, CURSOR],
        responses={200: s.SchemaPageSerializer, **COMMON_ERRORS},
    )
    def get(self, request):
        limit = self.query_limit()
        schemas = selectors.schemas_with_latest().order_by("name")
        if cursor := request.query_params.get("cursor"):
            (after,) = decode_cursor(cursor, 1)
            schemas = schemas.filter(name__gt=after)
        page = list(schemas[: limit + 1])
        next_cursor = encode_cursor([page[limit - 1].name]) if len(page) > limit else None
        return Response(
            {"results": s.SchemaSerializer(page[:limit], many=True).data, "next": self.next_url(next_cursor)}
        )

    @extend_schema(
        operation_id="schemas_create",
        request=s.SchemaCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.SchemaSerializer, **WRITE_ERRORS},
    )
    def post(self, request):
        data = _validated(s.SchemaCreateSerializer, request.data)
        owner_name = data.pop("owner", None)
        if self.principal.service is not None:
            if owner_name not in (None, self.principal.service.name):
                raise ValidationFailed(
                    "A service creates schemas for itself; owner is for operators.",
                    errors=[{"path": "/owner", "message": "must be omitted or your own service name."}],
                )
            owner = self.principal.service
        else:
            if not self.principal.user.has_perm("schemas.add_schema"):
                raise Forbidden("Your account lacks the permission schemas.add_schema.")
            owner = Service.objects.filter(name=owner_name).first() if owner_name else None
            if owner is None:
                raise ValidationFailed(
                    "Operators must name the owning service in owner.",
                    errors=[{"path": "/owner", "message": "must name an existing service."}],
                )
        schema = services.schema_create(owner=owner, **data)
        schema = selectors.schema_get(name=schema.name)
        location = request.build_absolute_uri(reverse("schema-detail", args=[schema.name]))
        return Response(s.SchemaSerializer(schema).data, status=201, headers={"Location": location})


class SchemaDetailView(NucleusAPIView):
    @extend_schema(operation_id="schemas_retrieve", responses={200: s.SchemaSerializer, **COMMON_ERRORS})
    def get(self, request, name):
        return Response(s.SchemaSerializer(selectors.schema_get(name=name)).data)

    @extend_schema(
        operation_id="schemas_update",
        request=s.SchemaUpdateSerializer,
        responses={200: s.SchemaSerializer, **WRITE_ERRORS, **FORBIDDEN},
    )
    def patch(self, request, name):
        schema = selectors.schema_get(name=name)
        _require_owner(self, schema, "schemas.change_schema")
        data = _validated(s.SchemaUpdateSerializer, request.data)
        services.schema_update(schema=schema, **data)
        return Response(s.SchemaSerializer(selectors.schema_get(name=name)).data)


class SchemaVersionListView(NucleusAPIView):
    @extend_schema(
        operation_id="schema_versions_list",
        parameters=[LIMIT, CURSOR],
        responses={200: s.SchemaVersionPageSerializer, **COMMON_ERRORS},
    )
    def get(self, request, name):
        versions, cursor = selectors.schema_versions_page(
            schema=selectors.schema_get(name=name),
            limit=self.query_limit(),
            encode=lambda version: encode_json(s.SchemaVersionSerializer(version).data),
            cursor=request.query_params.get("cursor"),
        )
        return self.page_response(versions, next=self.next_url(cursor))

    @extend_schema(
        operation_id="schema_versions_register",
        request=s.DefinitionSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            200: s.SchemaVersionSerializer,
            201: s.SchemaVersionSerializer,
            **WRITE_ERRORS,
            **FORBIDDEN,
            **TOO_LARGE,
            409: _problem(
                "Incompatible under the schema's mode (errors), or stored records would be invalid."
            ),
            422: _problem(
                "Not a valid JSON Schema, a $ref that is not local, or a pattern Nucleus cannot run."
            ),
        },
    )
    def post(self, request, name):
        schema = selectors.schema_get(name=name)
        _require_owner(self, schema, "schemas.add_schemaversion")
        data = _validated(s.DefinitionSerializer, request.data)
        version, created = services.schema_version_register(
            schema=schema, definition=data["definition"], actor=self.actor
        )
        location = request.build_absolute_uri(
            reverse("schema-version-detail", args=[schema.name, version.version])
        )
        return Response(
            s.SchemaVersionSerializer(version).data,
            status=201 if created else 200,
            headers={"Location": location},
        )


class SchemaVersionDetailView(NucleusAPIView):
    @extend_schema(
        operation_id="schema_versions_retrieve", responses={200: s.SchemaVersionSerializer, **COMMON_ERRORS}
    )
    def get(self, request, name, version):
        schema = selectors.schema_get(name=name)
        return Response(
            s.SchemaVersionSerializer(selectors.schema_version_get(schema=schema, version=version)).data
        )


class SchemaCompatibilityView(NucleusAPIView):
    @extend_schema(
        operation_id="schemas_compatibility",
        request=s.DefinitionSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={200: s.CompatibilityReportSerializer, **WRITE_ERRORS, **FORBIDDEN, **TOO_LARGE},
    )
    def post(self, request, name):
        schema = selectors.schema_get(name=name)
        _require_owner(self, schema, "schemas.view_schema")
        data = _validated(s.DefinitionSerializer, request.data)
        return Response(services.schema_compatibility_check(schema=schema, definition=data["definition"]))


class MigrationStatusView(NucleusAPIView):
    @extend_schema(
        operation_id="system_migrations",
        responses={200: s.MigrationStatusSerializer, **COMMON_ERRORS, 403: _problem("Operators only.")},
    )
    def get(self, request):
        if not self.principal.is_operator:
            raise Forbidden("Only operators may see the migration status.")
        return Response(selectors.migration_status())
