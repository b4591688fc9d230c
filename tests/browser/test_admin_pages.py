"""Every kind of admin page renders under the Content-Security-Policy, loading nothing from elsewhere.

The `page` fixture fails a test on any CSP violation, JavaScript error or request to another origin;
this test walks the pages the other browser tests do not reach.
"""

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from core.models import Collection, Event, Record, ServiceToken
from schemas.models import Schema, SchemaVersion
from tests.browser.conftest import csp

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_admin_pages_render_within_the_policy(shop, signed_in: Page):
    page = signed_in
    stream = Collection.objects.get(name="order-events")
    pages = {
        reverse("admin:core_collection_change", args=[shop.pk]): "Change collection",
        reverse("admin:core_collection_change", args=[stream.pk]): "Change collection",
        reverse("admin:core_collection_add"): "Add collection",
        reverse("admin:core_record_add"): "Add record",
        reverse("admin:core_record_changelist"): "Select record to change",
        reverse("admin:core_record_recoverlist"): "Recover deleted records",
        reverse("admin:core_event_changelist"): "Select event to view",
        reverse("admin:core_event_change", args=[Event.objects.first().pk]): "View event",
        reverse("admin:core_servicetoken_add"): "Add service token",
        reverse(
            "admin:core_servicetoken_change", args=[ServiceToken.objects.first().pk]
        ): "Change service token",
        reverse("admin:schemas_schema_change", args=[Schema.objects.get().pk]): "Change schema",
        reverse(
            "admin:schemas_schemaversion_change", args=[SchemaVersion.objects.get().pk]
        ): "View schema version",
        reverse("admin-migrations"): "Migrations",
        reverse("admin:backups_backup_changelist"): "Select backup to view",
        reverse("admin:auth_user_changelist"): "Select user to change",
        reverse("admin:axes_accessattempt_changelist"): "Select access attempt to change",
    }
    for path, heading in pages.items():
        response = page.goto(path)
        assert response.status == 200, path
        assert csp(response)["script-src"] == ["'self'"], path
        expect(page.locator("h1")).to_have_text(heading)

    # The admin's own scripts run under the policy: "select all" ticks every row (actions.js).
    page.goto(reverse("admin:core_record_changelist"))
    page.check("#action-toggle")
    expect(page.locator("#result_list tbody input.action-select:checked")).to_have_count(2)
    expect(page.locator(".action-counter")).to_contain_text("2 of 2 selected")
    assert Record.objects.count() == 2
