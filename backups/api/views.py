"""The backups API: operators only. Views check who asks and shape answers; services do the work."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from backups import selectors, services
from backups.api import serializers as s
from backups.models import BackupKind
from core.api.base import NucleusAPIView
from core.api.views import COMMON_ERRORS, CURSOR, IDEMPOTENCY_HEADER, LIMIT, _problem, _validated
from core.errors import BadRequest, Forbidden, ValidationFailed
from core.principals import Principal

OPERATORS_ONLY = {403: _problem("Backups are for operators: services always get 403.")}
BUSY = {
    500: _problem("The dump or restore tool failed (backup_failed, restore_failed, safety_backup_failed)."),
}


def _require_operator(principal: Principal, perm: str) -> None:
    if principal.service is not None:
        raise Forbidden("Backups and restores are for operators only.")
    if not principal.user.has_perm(perm):
        raise Forbidden(f"Your account lacks the permission {perm}.")


class BackupListView(NucleusAPIView):
    @extend_schema(
        operation_id="backups_list",
        parameters=[LIMIT, CURSOR],
        responses={200: s.BackupPageSerializer, **COMMON_ERRORS, **OPERATORS_ONLY},
    )
    def get(self, request):
        _require_operator(self.principal, "backups.view_backup")
        page, cursor = selectors.backups_page(
            limit=self.query_limit(), cursor=request.query_params.get("cursor")
        )
        return Response({"results": s.BackupSerializer(page, many=True).data, "next": self.next_url(cursor)})

    @extend_schema(
        operation_id="backups_create",
        description="Dump the database into backup storage with its manifest beside it; answers once both "
        "are written. Then applies retention (NUCLEUS_BACKUP_KEEP, NUCLEUS_BACKUP_KEEP_DAYS).",
        request=s.BackupCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: s.BackupSerializer,
            **COMMON_ERRORS,
            **OPERATORS_ONLY,
            409: _problem("The first request with this Idempotency-Key is still running."),
            413: _problem("Request body over 10 MiB."),
            415: _problem("The body is not application/json."),
            422: _problem("Validation failed (errors point into the body), or a reused Idempotency-Key."),
            **BUSY,
        },
    )
    def post(self, request):
        _require_operator(self.principal, "backups.add_backup")
        data = _validated(s.BackupCreateSerializer, request.data)
        backup = services.backup_create(actor=self.actor, kind=BackupKind.MANUAL, **data)
        services.backups_apply_retention(actor=self.actor)
        location = request.build_absolute_uri(reverse("backup-detail", args=[backup.id]))
        return Response(s.BackupSerializer(backup).data, status=201, headers={"Location": location})


class BackupDetailView(NucleusAPIView):
    @extend_schema(
        operation_id="backups_retrieve",
        responses={200: s.BackupSerializer, **COMMON_ERRORS, **OPERATORS_ONLY},
    )
    def get(self, request, backup_id):
        _require_operator(self.principal, "backups.view_backup")
        return Response(s.BackupSerializer(selectors.backup_get(backup_id=backup_id)).data)

    @extend_schema(
        operation_id="backups_destroy",
        description="Delete the dump and its manifest from storage, and the catalog entry.",
        responses={204: None, **COMMON_ERRORS, **OPERATORS_ONLY},
    )
    def delete(self, request, backup_id):
        _require_operator(self.principal, "backups.delete_backup")
        services.backup_delete(backup=selectors.backup_get(backup_id=backup_id), actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BackupVerifyView(NucleusAPIView):
    @extend_schema(
        operation_id="backups_verify",
        description="The manifest's signature, the checksum, then a test restore into a scratch database "
        "(dropped afterwards) and a comparison of its row counts with the manifest. The result is recorded "
        "on the backup.",
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            200: s.VerifyResultSerializer,
            **COMMON_ERRORS,
            **OPERATORS_ONLY,
            409: _problem(
                "Its manifest is not signed with the current or a fallback key (backup_signature_invalid; "
                "recorded as a failed verification), the backup is a dump of another engine "
                "(backup_engine_mismatch), or the first request with this Idempotency-Key is still running."
            ),
            415: _problem("A body that is not JSON, sent with an Idempotency-Key."),
            422: _problem("This Idempotency-Key was used for a different request."),
        },
    )
    def post(self, request, backup_id):
        _require_operator(self.principal, "backups.verify_backup")
        backup = selectors.backup_get(backup_id=backup_id)
        return Response(services.backup_verify(backup=backup, actor=self.actor))


class BackupRestoreView(NucleusAPIView):
    def initial(self, request, *args, **kwargs):
        # No Idempotency-Key replay: a restore replaces the stored responses themselves, and it must not
        # run inside the transaction that replay needs. The confirmation guards against repeats.
        super(NucleusAPIView, self).initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="backups_restore",
        description="Replace the whole database with this backup. Takes a safety backup first, restores "
        "in one transaction, records the restore, and rebuilds the catalog from storage (so it still "
        "lists newer backups and the safety backup). Idempotency-Key is not honoured here. Your session "
        "may not exist in the restored database: sign in again.",
        request=s.RestoreRequestSerializer,
        responses={
            200: s.RestoreSerializer,
            **COMMON_ERRORS,
            400: _problem("confirm is missing or is not the backup's id; nothing was touched."),
            **OPERATORS_ONLY,
            409: _problem(
                "Refused, database untouched: backup_signature_invalid (the manifest is unsigned, or not "
                "signed with the current or a fallback key), backup_corrupt (checksum mismatch, unreadable "
                "or missing dump), backup_engine_mismatch, backup_unknown_migrations."
            ),
            413: _problem("Request body over 10 MiB."),
            415: _problem("The body is not application/json."),
            422: _problem("Unknown fields in the body."),
            **BUSY,
        },
    )
    def post(self, request, backup_id):
        _require_operator(self.principal, "backups.restore_backup")
        backup = selectors.backup_get(backup_id=backup_id)
        body = self.body_object()
        unknown = sorted(set(body) - {"confirm"})
        if unknown:
            raise ValidationFailed(
                "The request body is invalid.",
                errors=[{"path": f"/{name}", "message": "unknown field."} for name in unknown],
            )
        confirm = body.get("confirm")
        if not isinstance(confirm, str) or not confirm:
            raise BadRequest(
                f'A restore replaces the whole database: send {{"confirm": "{backup.id}"}}; '
                "nothing was touched.",
                code="confirmation_required",
            )
        restore = services.backup_restore(backup=backup, confirm=confirm, actor=self.actor, via="api")
        return Response(s.RestoreSerializer(restore).data)
