"""Schemas and their versions in the admin; versions are read-only, shown pretty-printed with a diff."""

import difflib
import json

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html

from core.admin import FiltersByPermission
from core.errors import NucleusError
from schemas import services
from schemas.models import Schema, SchemaVersion
from schemas.selectors import migration_status


def _pretty(definition) -> str:
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False)


class SchemaVersionInline(admin.TabularInline):
    model = SchemaVersion
    extra = 0
    can_delete = False
    fields = ["version", "fingerprint", "created_at", "created_by"]
    readonly_fields = fields
    show_change_link = True
    ordering = ["-version"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Schema)
class SchemaAdmin(admin.ModelAdmin):
    list_display = ["name", "compatibility", "owner", "latest_version", "updated_at"]
    # Owners only, not every service: the rows name their owner anyway.
    list_filter = ["compatibility", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "description"]
    inlines = [SchemaVersionInline]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "owner", "created_at", "updated_at"] if obj else ["created_at", "updated_at"]

    @admin.display(description="latest version")
    def latest_version(self, obj):
        return obj.versions.order_by("-version").values_list("version", flat=True).first()

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except NucleusError as exc:
            self.message_user(request, exc.detail, level=messages.ERROR)
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj, form, change):
        if change:
            stored = Schema.objects.get(pk=obj.pk)
            services.schema_update(
                schema=stored, compatibility=obj.compatibility, description=obj.description
            )
        else:
            created = services.schema_create(
                name=obj.name, owner=obj.owner, compatibility=obj.compatibility, description=obj.description
            )
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at

    def has_delete_permission(self, request, obj=None):
        return False  # schemas are contracts other services rely on; versions are immutable


@admin.register(SchemaVersion)
class SchemaVersionAdmin(FiltersByPermission, admin.ModelAdmin):
    list_display = ["schema", "version", "fingerprint", "created_at", "created_by"]
    list_filter = ["schema"]
    filter_permissions = {"schema": "schemas.view_schema"}
    list_select_related = ["schema"]
    search_fields = ["schema__name", "fingerprint"]
    fields = ["schema", "version", "fingerprint", "created_at", "created_by", "definition_pretty", "changes"]
    readonly_fields = fields

    @admin.display(description="definition")
    def definition_pretty(self, obj):
        return format_html('<pre class="nucleus-json">{}</pre>', _pretty(obj.definition))

    @admin.display(description="changes from the previous version")
    def changes(self, obj):
        previous = obj.schema.versions.filter(version=obj.version - 1).first()
        if previous is None:
            return "This is the first version."
        diff = difflib.unified_diff(
            _pretty(previous.definition).splitlines(),
            _pretty(obj.definition).splitlines(),
            fromfile=f"version {previous.version}",
            tofile=f"version {obj.version}",
            lineterm="",
        )
        return format_html('<pre class="nucleus-diff">{}</pre>', "\n".join(diff) or "No changes.")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def migration_status_view(request):
    """Applied and pending migrations per app, for operators (as GET /api/v1/system/migrations/)."""
    context = {
        **admin.site.each_context(request),
        "title": "Migrations",
        "status": migration_status(),
    }
    return TemplateResponse(request, "admin/migration_status.html", context)
