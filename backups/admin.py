"""Backups in the admin: the catalog with size, age and verification; back up now, verify, restore."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from backups import selectors, services
from backups.models import Backup, BackupKind, BackupStatus, Restore
from backups.storage import human_size
from core.errors import NucleusError
from core.principals import Actor


def _actor(request) -> Actor:
    return Actor.for_user(request.user, getattr(request, "request_id", ""))


def freshness_warning() -> str | None:
    """The sentence the admin shows when the newest usable backup is too old, or None."""
    freshness = selectors.backup_freshness()
    hours = freshness.max_age.total_seconds() / 3600
    if freshness.newest is None:
        return "There is no usable backup of this database: back up now."
    if freshness.stale:
        return (
            f"The newest usable backup ({freshness.newest.id}) is "
            f"{timesince(freshness.newest.created_at)} old, "
            f"more than the {hours:g} hours of NUCLEUS_BACKUP_MAX_AGE_HOURS: back up now."
        )
    return None


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "age", "engine", "kind", "size_display", "status", "verified", "note"]
    list_filter = ["status", "engine", "kind"]
    search_fields = ["id", "file", "note"]
    ordering = ["-created_at", "-id"]
    actions = ["verify_selected", "restore_selected", "delete_selected"]
    change_list_template = "admin/backups/backup/change_list.html"
    fields = [
        "id",
        "status",
        "kind",
        "file",
        "size",
        "sha256",
        "engine",
        "database",
        "compressed",
        "created_at",
        "duration_ms",
        "created_by",
        "note",
        "nucleus_version",
        "verified_at",
        "verify_ok",
        "verify_checks",
        "verify_duration_ms",
        "row_counts",
        "migrations",
    ]
    readonly_fields = fields

    @admin.display(description="age")
    def age(self, backup):
        return timesince(backup.created_at)

    @admin.display(description="size", ordering="size")
    def size_display(self, backup):
        return human_size(backup.size)

    @admin.display(description="verified")
    def verified(self, backup):
        if backup.verified_at is None:
            return "never"
        verdict = "ok" if backup.verify_ok else "FAILED"
        return format_html("{} {} ago", verdict, timesince(backup.verified_at))

    def has_add_permission(self, request):
        return False  # "Back up now" dumps the database; there is nothing to fill in

    def has_change_permission(self, request, obj=None):
        return False

    def has_verify_permission(self, request) -> bool:
        return request.user.has_perm("backups.verify_backup")

    def has_restore_permission(self, request) -> bool:
        return request.user.has_perm("backups.restore_backup")

    def has_backup_permission(self, request) -> bool:
        return request.user.has_perm("backups.add_backup")

    def delete_model(self, request, obj):
        services.backup_delete(backup=obj, actor=_actor(request))

    def delete_queryset(self, request, queryset):
        for backup in queryset:
            services.backup_delete(backup=backup, actor=_actor(request))

    def get_urls(self):
        own = [
            path("backup-now/", self.admin_site.admin_view(self.backup_now_view), name="backups_backup_now"),
            path("rebuild/", self.admin_site.admin_view(self.rebuild_view), name="backups_backup_rebuild"),
            path(
                "<path:object_id>/restore/",
                self.admin_site.admin_view(self.restore_view),
                name="backups_backup_restore",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        warning = freshness_warning()
        if warning and request.method == "GET":
            messages.warning(request, warning)
        extra_context = {
            **(extra_context or {}),
            "can_back_up": self.has_backup_permission(request),
            "can_rebuild": self.has_backup_permission(request),
            "recent_restores": (
                selectors.restores_recent(limit=5) if request.user.has_perm("backups.view_restore") else []
            ),
        }
        return super().changelist_view(request, extra_context)

    @admin.action(
        description="Verify the selected backups (test restore into a scratch database)",
        permissions=["verify"],
    )
    def verify_selected(self, request, queryset):
        for backup in queryset:
            try:
                result = services.backup_verify(backup=backup, actor=_actor(request))
            except NucleusError as exc:
                self.message_user(request, f"{backup.id}: {exc.detail}", level=messages.ERROR)
                continue
            if result["ok"]:
                self.message_user(
                    request, f"{backup.id} verified in {result['duration_ms']} ms.", messages.SUCCESS
                )
            else:
                failed = "; ".join(f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["ok"])
                self.message_user(request, f"{backup.id} FAILED verification: {failed}", messages.ERROR)

    @admin.action(description="Restore the selected backup…", permissions=["restore"])
    def restore_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one backup to restore.", messages.ERROR)
            return None
        backup = queryset.get()
        return HttpResponseRedirect(reverse("admin:backups_backup_restore", args=[backup.pk]))

    def backup_now_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_backup_permission(request):
            raise PermissionDenied
        try:
            backup = services.backup_create(
                actor=_actor(request), kind=BackupKind.MANUAL, note=request.POST.get("note", "")[:1000]
            )
            deleted = services.backups_apply_retention(actor=_actor(request))
        except NucleusError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
        else:
            retention = f" Retention deleted {len(deleted)} older backups." if deleted else ""
            self.message_user(
                request,
                f"Backed up as {backup.id} ({human_size(backup.size)}, {backup.duration_ms} ms).{retention}",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:backups_backup_changelist"))

    def rebuild_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_backup_permission(request):
            raise PermissionDenied
        summary = services.catalog_rebuild()
        note = ""
        if summary.dumps_without_manifest:
            note = f" {len(summary.dumps_without_manifest)} dumps have no manifest and cannot be restored."
        untrusted = len(summary.untrusted_manifests)
        if untrusted:
            note += (
                f" {untrusted} manifest{' is' if untrusted == 1 else 's are'} not signed with a known key: "
                "not listed, and cannot be restored (see manage.py resignbackups)."
            )
        self.message_user(
            request,
            f"The catalog now lists the {summary.backups} backups and {summary.restores} restores "
            f"in storage.{note}",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:backups_backup_changelist"))

    def restore_view(self, request, object_id):
        if not self.has_restore_permission(request):
            raise PermissionDenied
        backup = Backup.objects.filter(pk=object_id).first()
        if backup is None:
            raise Http404(f"There is no backup {object_id!r}.")
        error = None
        if request.method == "POST":
            try:
                restore = services.backup_restore(
                    backup=backup, confirm=request.POST.get("confirm", ""), actor=_actor(request), via="admin"
                )
            except NucleusError as exc:
                if exc.code != "confirmation_mismatch":
                    self.message_user(request, f"Restore refused: {exc.detail}", messages.ERROR)
                    return HttpResponseRedirect(reverse("admin:backups_backup_changelist"))
                error = exc.detail
            else:
                pending = (
                    " Migrations are pending: run manage.py migrate." if restore.pending_migrations else ""
                )
                self.message_user(
                    request,
                    f"Restored {backup.id} in {restore.duration_ms} ms; the safety backup is "
                    f"{restore.safety_backup}.{pending} Sign in again if your session predates the backup.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:backups_backup_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Restore backup {backup.id}?",
            "opts": self.model._meta,
            "backup": backup,
            "size": human_size(backup.size),
            "loss": selectors.restore_loss(backup=backup),
            "engine_matches": backup.engine == services.live_engine(),
            "usable": backup.status in (BackupStatus.AVAILABLE, BackupStatus.VERIFIED),
            "error": error,
        }
        return TemplateResponse(request, "admin/backups/backup/restore_confirmation.html", context)


@admin.register(Restore)
class RestoreAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "source_backup",
        "outcome",
        "requested_by",
        "via",
        "safety_backup",
        "duration_ms",
    ]
    list_filter = ["outcome", "via"]
    search_fields = ["source_backup", "safety_backup", "requested_by", "detail"]
    readonly_fields = [field.name for field in Restore._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the record of restores is kept in storage and rebuilt from there
