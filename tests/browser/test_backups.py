"""Backups from the admin, in a real browser: back up now, verify, and the control room sees it."""

import re

import pytest
from playwright.sync_api import Page, expect

from backups.models import Backup, BackupStatus
from tests.browser.conftest import messages, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_operator_backs_up_and_verifies_from_the_admin(shop, backup_dir, signed_in: Page):
    page = signed_in
    expect(page.locator("#nucleus-verified-backup")).to_contain_text("⚠ none")
    expect(page.locator("#nucleus-backup")).to_contain_text("There is no usable backup of this database")
    page.locator("#nucleus-glance").get_by_role("link", name="Newest backup", exact=True).click()
    expect(page.locator("h1")).to_have_text("Select backup to view")
    expect(messages(page)).to_contain_text("There is no usable backup of this database: back up now.")

    page.fill('input[name="note"]', "before the release")
    page.get_by_role("button", name="Back up now").click()

    expect(messages(page)).to_contain_text(re.compile(r"Backed up as \S+ \("))
    backup = Backup.objects.get()
    row = page.locator("#result_list tbody tr", has_text=backup.id)
    expect(row.locator(".field-status")).to_have_text("available (not verified yet)")
    expect(row.locator(".field-verified")).to_have_text("never")
    expect(row.locator(".field-note")).to_have_text("before the release")

    row.locator('input[name="_selected_action"]').check()
    page.select_option('select[name="action"]', "verify_selected")
    page.click('button[name="index"]')

    expect(messages(page)).to_contain_text(re.compile(rf"{re.escape(backup.id)} verified in \d+ ms\."))
    row = page.locator("#result_list tbody tr", has_text=backup.id)
    expect(row.locator(".field-status")).to_have_text("verified")
    expect(row.locator(".field-verified")).to_contain_text("ok 0\xa0minutes ago")
    screenshot(page, "admin-backups")
    backup.refresh_from_db()
    assert (backup.status, backup.verify_ok, backup.created_by) == (
        BackupStatus.VERIFIED,
        True,
        "operator:alice",
    )
    assert (backup_dir / backup.file).is_file()

    page.get_by_role("link", name="Home").click()
    expect(page.locator("#nucleus-backup")).to_have_text(f"made 0\xa0minutes ago ({backup.id})")
    expect(page.locator("#nucleus-verified-backup")).to_have_text("made 0\xa0minutes ago")
    screenshot(page, "admin-index")
