"""The operators' admin: services and tokens, collections and grants, records with their history."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Min
from django.forms.fields import InvalidJSONInput
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import reverse
from reversion.admin import VersionAdmin
from reversion.models import Version

from core import history, selectors, services
from core.errors import NotFound, NucleusError
from core.models import Collection, ConsumerPosition, Event, Grant, Record, Service, ServiceToken
from core.principals import Actor
from core.services import UNCHANGED


def _actor(request) -> Actor:
    return Actor.for_user(request.user, getattr(request, "request_id", ""))


admin.site.site_header = "Nucleus"
admin.site.site_title = "Nucleus admin"
admin.site.index_title = "Control room"


class FiltersByPermission:
    """List filters naming another model's objects show only to users who may view that model.

    A filter lists every object of its model, not only those in the rows: a user who may see tokens
    but not services would otherwise read every service's name in the token list's sidebar.
    """

    filter_permissions: dict[str, str] = {}

    def get_list_filter(self, request):
        def allowed(item) -> bool:
            name = item if isinstance(item, str) else item[0] if isinstance(item, (list, tuple)) else None
            perm = self.filter_permissions.get(name)
            return perm is None or request.user.has_perm(perm)

        return [item for item in super().get_list_filter(request) if allowed(item)]


class _ServiceCallMixin:
    """Run service calls from the change form; a refusal shows on the form, with nothing saved, not a 500.

    A refusal whose errors all point into one field named in ``refusal_fields`` (by JSON Pointer,
    ``/data/...``) is shown on that field, next to what the operator typed; any other on the form.
    """

    refusal_fields: tuple[str, ...] = ()

    def call(self, request, func, **kwargs):
        try:
            return func(**kwargs)
        except NucleusError as exc:
            raise _Refused(exc) from exc

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as refused:
            # The view's transaction has rolled back: render the submitted form again, with the reason.
            request._nucleus_refusal = refused.error
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "_nucleus_refusal", None)
        if refusal is None:
            return form_class

        errors = refusal.errors or []
        fields = {error["path"].split("/")[1] if error["path"].count("/") else "" for error in errors}
        field = fields.pop() if len(fields) == 1 and fields <= set(self.refusal_fields) else None
        details = [f"{error['path']}: {error['message']}" for error in errors]
        # The detail usually quotes the first error already; do not say it twice.
        lines = [refusal.detail, *(d for d in details if d not in refusal.detail)]

        class RefusedForm(form_class):
            def clean(self):
                cleaned_data = super().clean()
                self.add_error(field, lines)
                return cleaned_data

        return RefusedForm


class _Refused(Exception):
    def __init__(self, error: NucleusError):
        super().__init__(error.detail)
        self.error = error


class ServiceTokenInline(admin.TabularInline):
    model = ServiceToken
    extra = 0
    can_delete = False
    fields = ["prefix", "label", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class ServiceAddForm(forms.ModelForm):
    issue_token = forms.BooleanField(
        required=False,
        initial=True,
        label="Issue a token",
        help_text="Shown once, on the next page: copy it then. More can be issued later.",
    )


def _show_token_once(request, service: Service, plain: str) -> None:
    """Put the plain token in the next page's messages: the only place it is ever shown."""
    messages.warning(request, f"New token for {service.name} (copy it now; it is not shown again): {plain}")


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "description", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "description"]
    inlines = [ServiceTokenInline]
    actions = ["issue_token"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ServiceAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if obj else [*[f for f in fields if f != "issue_token"], "issue_token"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "created_at", "updated_at"] if obj else ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if change:
            services.service_update(
                service=obj, description=obj.description, is_active=obj.is_active, actor=_actor(request)
            )
            return
        actor = _actor(request)
        service, _ = services.service_ensure(name=obj.name, description=obj.description, actor=actor)
        obj.pk, obj.created_at, obj.updated_at = service.pk, service.created_at, service.updated_at
        if form.cleaned_data.get("issue_token") and self.has_issue_token_permission(request):
            _, plain = services.token_issue(service=service, label="issued in admin", actor=actor)
            _show_token_once(request, service, plain)

    def has_issue_token_permission(self, request) -> bool:
        return request.user.has_perm("core.add_servicetoken")

    @admin.action(description="Issue a new token (shown once)", permissions=["issue_token"])
    def issue_token(self, request, queryset):
        for service in queryset:
            _, plain = services.token_issue(service=service, label="issued in admin", actor=_actor(request))
            _show_token_once(request, service, plain)


@admin.register(ServiceToken)
class ServiceTokenAdmin(FiltersByPermission, _ServiceCallMixin, admin.ModelAdmin):
    list_display = ["prefix", "service", "label", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["service", ("revoked_at", admin.EmptyFieldListFilter)]
    filter_permissions = {"service": "core.view_service"}
    search_fields = ["prefix", "service__name", "label"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["service", "label", "expires_at"]
        return ["service", "label", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["service", "label", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, plain = self.call(
            request,
            services.token_issue,
            service=obj.service,
            label=obj.label,
            expires_at=obj.expires_at,
            actor=_actor(request),
        )
        obj.pk, obj.prefix, obj.token_hash, obj.created_at = (
            token.pk,
            token.prefix,
            token.token_hash,
            token.created_at,
        )
        _show_token_once(request, obj.service, plain)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset:
            services.token_revoke(token=token, actor=_actor(request))
        count = len(queryset)
        self.message_user(request, f"Revoked {count} token{pluralize(count)}.")

    def has_delete_permission(self, request, obj=None):
        return False


class GrantInline(admin.TabularInline):
    model = Grant
    extra = 0
    fields = ["service", "access", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]


class ConsumerPositionInline(admin.TabularInline):
    """Every service's consumers of a stream and their lag; positions are moved through the API."""

    model = ConsumerPosition
    extra = 0
    can_delete = False
    fields = ["service", "consumer", "offset", "lag", "updated_at", "updated_by"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # lag reads the stream's head; the service's name comes with the same query
        return (
            super()
            .get_queryset(request)
            .select_related("stream", "owner")
            .order_by("owner__name", "consumer")
        )

    @admin.display(description="service", ordering="owner__name")
    def service(self, position):
        return position.owner.name

    @admin.display(description="lag")
    def lag(self, position):
        return max(position.stream.last_offset - position.offset, 0)


@admin.register(Collection)
class CollectionAdmin(_ServiceCallMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "owner", "last_offset", "consumer_lag", "require_if_match", "created_at"]
    # Owners only, not every service: the rows name their owner anyway.
    list_filter = ["kind", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "description"]
    inlines = [GrantInline, ConsumerPositionInline]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("owner").annotate(slowest=Min("consumers__offset"))
        )

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        if request.user.has_perm("core.view_consumerposition"):
            return shown
        return [name for name in shown if name != "consumer_lag"]

    @admin.display(description="largest consumer lag")
    def consumer_lag(self, collection):
        if collection.kind != "stream" or collection.slowest is None:
            return "—"
        return collection.last_offset - collection.slowest

    def get_inlines(self, request, obj):
        return (
            [GrantInline, ConsumerPositionInline]
            if obj is not None and obj.kind == "stream"
            else [GrantInline]
        )

    def get_readonly_fields(self, request, obj=None):
        readonly = ["last_offset", "created_at", "updated_at"]
        return ["name", "kind", "owner", *readonly] if obj else readonly

    def save_model(self, request, obj, form, change):
        if change:
            # obj already carries the form's values; the service compares them with the stored row. The
            # pin is passed only when the operator changed it: left as it was, the service keeps it, or
            # for a newly chosen schema applies its default (another service's schema: its latest).
            stored = self.call(
                request,
                services.collection_update,
                collection=Collection.objects.get(pk=obj.pk),
                actor=_actor(request),
                description=obj.description,
                require_if_match=obj.require_if_match,
                schema=obj.schema,
                schema_version=obj.schema_version if "schema_version" in form.changed_data else UNCHANGED,
                change_stream=obj.change_stream,
            )
            obj.updated_at, obj.schema_version = stored.updated_at, stored.schema_version
        else:
            created = self.call(
                request,
                services.collection_create,
                actor=_actor(request),
                name=obj.name,
                owner=obj.owner,
                kind=obj.kind,
                description=obj.description,
                require_if_match=obj.require_if_match,
                schema=obj.schema,
                schema_version=UNCHANGED if obj.schema_version is None else obj.schema_version,
                change_stream=obj.change_stream,
            )
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
            obj.schema_version = created.schema_version

    def save_formset(self, request, form, formset, change):
        collection = form.instance
        # What formset.save() would record, for the admin's change message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for grant_form in formset.forms:
            if not grant_form.has_changed() and not grant_form.cleaned_data.get("DELETE"):
                continue
            data = grant_form.cleaned_data
            if not data:
                continue
            if data.get("DELETE") and data.get("id"):
                service_name = data["id"].service.name
                self.call(
                    request,
                    services.grant_revoke,
                    collection=collection,
                    service_name=service_name,
                    actor=_actor(request),
                )
                formset.deleted_objects.append(data["id"])
            elif not data.get("DELETE"):
                if data.get("id") and data["id"].service_id != data["service"].pk:
                    self.call(
                        request,
                        services.grant_revoke,
                        collection=collection,
                        service_name=data["id"].service.name,
                        actor=_actor(request),
                    )
                grant, created = self.call(
                    request,
                    services.grant_set,
                    collection=collection,
                    service_name=data["service"].name,
                    access=data["access"],
                    actor=_actor(request),
                )
                if created:
                    formset.new_objects.append(grant)
                else:
                    formset.changed_objects.append((grant, grant_form.changed_data))

    def delete_model(self, request, obj):
        services.collection_delete(collection=obj, actor=_actor(request), force=True)

    def delete_queryset(self, request, queryset):
        for collection in queryset:
            services.collection_delete(collection=collection, actor=_actor(request), force=True)


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so that an operator reads and edits a record's data as a document."""

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value  # what the operator typed, unchanged, beside its error
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class RecordForm(forms.ModelForm):
    """The record form carries the version it was loaded at, so a stale form cannot overwrite newer data."""

    data = PrettyJSONField(
        help_text="A JSON object. Saving validates it against the collection's schema, if it has one.",
        widget=forms.Textarea(
            attrs={
                "rows": 18,
                "class": "nucleus-json vLargeTextField",
                "spellcheck": "false",
            }
        ),
    )
    loaded_version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.fields["loaded_version"].initial = self.instance.version


# The record history page lists this many versions; the API's history endpoint pages through all.
HISTORY_SHOWN = 200
# "Recover deleted records" shows this many per page, newest deletion first.
RECOVER_PER_PAGE = 100


@admin.register(Record)
class RecordAdmin(FiltersByPermission, _ServiceCallMixin, VersionAdmin):
    """Records with history: edits, deletes, reverts and recoveries all go through the record services."""

    form = RecordForm
    refusal_fields = ("data",)
    object_history_template = "admin/core/record/object_history.html"
    recover_list_template = "admin/core/record/recover_list.html"

    list_display = ["key", "collection", "version", "updated_at", "updated_by"]
    list_filter = ["collection", "updated_at"]
    filter_permissions = {"collection": "core.view_collection"}
    search_fields = ["key"]
    search_help_text = "Search by key (any part of it)."
    list_select_related = ["collection"]
    show_full_result_count = False  # counting a large table on every page is not worth it
    ordering = ["collection__name", "key"]
    history_latest_first = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("collection__schema")

    def get_fields(self, request, obj=None):
        return [
            "collection",
            "key",
            "data",
            "loaded_version",
            "version",
            "schema",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = ["version", "schema", "created_at", "created_by", "updated_at", "updated_by"]
        return ["collection", "key", *readonly] if obj and obj._state.adding is False else readonly

    @admin.display(description="schema")
    def schema(self, record):
        """What the data was validated against, and what the next save will be validated against."""
        if record.pk is None:
            return "—"
        bound = record.collection.schema
        if bound is None:
            return "None: the collection is bound to no schema."
        validated = f"its version {record.schema_version}" if record.schema_version else "no version of it"
        pin = record.collection.schema_version
        checks = f"version {pin}, the collection's pin" if pin else "the latest version"
        return f"{bound.name}: this data was validated against {validated}; saving checks {checks}."

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "collection":
            kwargs["queryset"] = Collection.objects.filter(kind="records")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        actor = _actor(request)
        with transaction.atomic():
            if change:
                # If-Match: the version the form showed (or, without it, the one just read), so that an
                # edit never overwrites a newer version and works on collections that require If-Match.
                loaded = form.cleaned_data.get("loaded_version") or obj.version
                record, _ = self.call(
                    request,
                    services.record_put,
                    collection=obj.collection,
                    key=obj.key,
                    data=obj.data,
                    actor=actor,
                    if_match=frozenset({loaded}),
                )
            else:
                record = self.call(
                    request,
                    services.record_create,
                    collection=obj.collection,
                    key=obj.key,
                    data=obj.data,
                    actor=actor,
                )
        obj.pk, obj.version = record.pk, record.version
        obj.created_at, obj.updated_at = record.created_at, record.updated_at
        obj.created_by, obj.updated_by = record.created_by, record.updated_by
        obj._state.adding = False

    def delete_model(self, request, obj):
        services.record_delete(
            collection=obj.collection, key=obj.key, actor=_actor(request), if_match=frozenset({obj.version})
        )

    def delete_queryset(self, request, queryset):
        for record in queryset.select_related("collection"):
            services.record_delete(
                collection=record.collection,
                key=record.key,
                actor=_actor(request),
                if_match=frozenset({record.version}),
            )

    def _revert_through_service(self, request, version_id, object_id=None):
        """POST of a revision or recover form: write a new version equal to the chosen one."""
        recovering = object_id is None
        if not self.has_change_permission(request) or (recovering and not self.has_add_permission(request)):
            raise PermissionDenied
        versions = Version.objects.get_for_model(Record).select_related("revision")
        if object_id is not None:
            versions = versions.filter(object_id=unquote(object_id))
        version = get_object_or_404(versions, pk=version_id)
        fields = version.field_dict
        collection = Collection.objects.filter(pk=fields["collection_id"]).first()
        current = Record.objects.filter(pk=version.object_id).values_list("version", flat=True).first()
        try:
            if collection is None:
                raise NotFound(f"The collection of {fields['key']!r} no longer exists.")
            record, _ = services.record_revert(
                collection=collection,
                key=fields["key"],
                version=fields["version"],
                actor=_actor(request),
                if_match=None if current is None else frozenset({current}),
            )
        except NucleusError as exc:
            self.message_user(request, exc.detail, level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:core_record_changelist"))
        verb = "Recovered" if recovering or current is None else "Reverted"
        source = (
            "with the data it had when it was deleted"
            if fields.get("deleted")
            else f"equal to version {fields['version']}"
        )
        self.message_user(request, f"{verb} {record.key}: it is now at version {record.version}, {source}.")
        return HttpResponseRedirect(reverse("admin:core_record_change", args=[record.pk]))

    def history_view(self, request, object_id, extra_context=None):
        """Every version of the record, newest first, with number, actor and comment; each opens to revert.

        VersionAdmin's own list shows only dates and Django users, which says nothing of services'
        writes. One query, for at most HISTORY_SHOWN versions.
        """
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        versions = list(
            Version.objects.get_for_object_reference(Record, unquote(object_id))
            .select_related("revision", "revision__write_meta")
            .order_by("-pk")[: HISTORY_SHOWN + 1]
        )
        context = {
            "entries": [self._history_entry(version) for version in versions[:HISTORY_SHOWN]],
            "more": len(versions) > HISTORY_SHOWN,
            "shown": HISTORY_SHOWN,
            **(extra_context or {}),
        }
        return admin.ModelAdmin.history_view(self, request, object_id, context)

    def _history_entry(self, version: Version) -> dict:
        fields = json.loads(version.serialized_data)[0]["fields"]
        meta = getattr(version.revision, "write_meta", None)
        data = json.dumps(fields["data"], ensure_ascii=False)
        return {
            "version": fields["version"],
            "deleted": fields.get("deleted", False),
            "changed_at": version.revision.date_created,
            "changed_by": meta.actor if meta else "",
            "comment": version.revision.comment,
            "data_preview": data if len(data) <= 120 else data[:119] + "…",
            "url": reverse(
                f"{self.admin_site.name}:core_record_revision", args=[quote(version.object_id), version.pk]
            ),
        }

    def revision_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            return self._revert_through_service(request, version_id, object_id)
        return super().revision_view(request, object_id, version_id, extra_context)

    def recoverlist_view(self, request, extra_context=None):
        """Deleted records (not created again) with their collection, a page at a time: three queries.

        VersionAdmin's own list matches versions to live rows by casting object ids, which on SQLite
        (UUIDs stored as 32 hex digits) matches none and so lists every record ever written.
        """
        if not self.has_change_permission(request) or not self.has_add_permission(request):
            raise PermissionDenied
        page = Paginator(selectors.records_deleted(), RECOVER_PER_PAGE).get_page(request.GET.get("p"))
        newest = history.newest_versions(tombstone.pk for tombstone in page)
        rows = [{"tombstone": tombstone, "version_id": newest.get(str(tombstone.pk))} for tombstone in page]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Recover deleted records",
            "page": page,
            "rows": rows,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.recover_list_template, context)

    def recover_view(self, request, version_id, extra_context=None):
        if request.method == "POST":
            return self._revert_through_service(request, version_id)
        return super().recover_view(request, version_id, extra_context)


@admin.register(Event)
class EventAdmin(FiltersByPermission, admin.ModelAdmin):
    """Events are immutable: browsable, filterable by stream, type and offset (?offset__gte=&offset__lte=)."""

    list_display = ["offset", "stream", "type", "producer", "created_at"]
    list_filter = ["stream", "type"]
    filter_permissions = {"stream": "core.view_collection"}
    list_select_related = ["stream"]
    search_fields = ["=event_id", "type"]
    ordering = ["stream_id", "-offset"]
    show_full_result_count = False
    fields = ["stream", "offset", "event_id", "type", "producer", "created_at", "data"]
    readonly_fields = fields

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in ("offset__gte", "offset__lte", "offset__gt", "offset__lt") or super().lookup_allowed(
            lookup, value, request
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
