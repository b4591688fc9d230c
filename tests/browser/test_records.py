"""Records in the admin, in a real browser: find, edit, see the new version, revert, refused edits."""

import json
import re

import pytest
from playwright.sync_api import Locator, Page, expect

from core import services
from core.admin import RECOVER_PER_PAGE
from core.models import Record
from tests.actors import TEST_ACTOR
from tests.browser.conftest import messages, screenshot
from tests.core.records_support import history_entries

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def assert_shows_json(textarea: Locator, expected: dict) -> None:
    """The textarea holds this data as indented JSON (key order is the database's: jsonb sorts keys)."""
    expect(textarea).to_have_value(re.compile(r'^\{\n  "'))
    assert json.loads(textarea.input_value()) == expected


def open_record(page: Page, key: str) -> None:
    """From the control room: the collection's records, a search by key, the record's page."""
    page.goto("/admin/")
    page.locator("#nucleus-collections-table").get_by_role("link", name="orders").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.fill("#searchbar", key)
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.locator("#result_list").get_by_role("link", name=key).click()
    expect(page.locator(".field-key .readonly")).to_have_text(key)


def test_an_operator_edits_a_record_and_reverts_it_from_history(shop, signed_in: Page):
    page = signed_in
    open_record(page, "order-1")
    data = page.locator("#id_data")
    assert_shows_json(data, {"status": "new", "total": 25})
    expect(page.locator(".field-version .readonly")).to_have_text("1")

    data.fill(json.dumps({"status": "paid", "total": 25, "paid_by": "card"}, indent=2))
    page.click('input[name="_save"]')

    expect(messages(page)).to_contain_text("was changed successfully")
    row = page.locator("#result_list tbody tr", has_text="order-1")
    expect(row.locator(".field-version")).to_have_text("2")
    expect(row.locator(".field-updated_by")).to_have_text("operator:alice")

    row.get_by_role("link", name="order-1").click()
    expect(page.locator(".field-version .readonly")).to_have_text("2")
    page.get_by_role("link", name="History").click()
    expect(page.locator("#change-history tbody tr")).to_have_count(2)
    expect(page.locator("#version-2")).to_contain_text("version 2 (current)")
    expect(page.locator("#version-2")).to_contain_text("operator:alice")
    expect(page.locator("#version-2")).to_contain_text('"paid_by": "card"')
    expect(page.locator("#version-1")).to_contain_text("command:tests")
    screenshot(page, "admin-record-history")

    page.get_by_role("link", name="version 1").click()
    assert_shows_json(page.locator("#id_data"), {"status": "new", "total": 25})
    page.click('input[name="_save"]')

    expect(messages(page)).to_contain_text("Reverted order-1: it is now at version 3, equal to version 1.")
    expect(page.locator(".field-version .readonly")).to_have_text("3")
    record = Record.objects.get(collection=shop, key="order-1")
    assert (record.version, record.data, record.updated_by) == (
        3,
        {"status": "new", "total": 25},
        "operator:alice",
    )
    entries = history_entries(record.pk, limit=10)
    assert [(e["version"], e["changed_by"]) for e in entries] == [
        (3, "operator:alice"),
        (2, "operator:alice"),
        (1, "command:tests"),
    ]


def test_an_edit_the_schema_refuses_shows_its_error_on_the_page(shop, signed_in: Page):
    page = signed_in
    open_record(page, "order-2")

    page.fill("#id_data", '{"status": "lost", "total": -1}')
    page.click('input[name="_save"]')

    expect(page.locator(".errornote")).to_contain_text("Please correct the error below.")
    errors = page.locator(".field-data .errorlist")
    expect(errors).to_contain_text("does not match the schema of 'orders' (version 1)")
    expect(errors).to_contain_text('/data/status: "lost" is not one of "new", "paid" or "shipped"')
    expect(errors).to_contain_text("/data/total: -1 is less than the minimum of 0")
    expect(page.locator("#id_data")).to_have_value('{\n  "status": "lost",\n  "total": -1\n}')
    screenshot(page, "admin-record-refused")

    page.fill("#id_data", '{"status": "paid", "total": ')
    page.click('input[name="_save"]')
    expect(page.locator(".field-data .errorlist")).to_have_text("Enter a valid JSON.")
    expect(page.locator("#id_data")).to_have_value('{"status": "paid", "total": ')

    record = Record.objects.get(collection=shop, key="order-2")
    assert (record.version, record.data) == (1, {"status": "paid", "total": 12.5})
    assert len(history_entries(record.pk, limit=10)) == 1


def test_an_operator_recovers_a_deleted_record(shop, signed_in: Page):
    page = signed_in
    open_record(page, "order-2")
    page.get_by_role("link", name="Delete").click()
    page.click('input[type="submit"]')
    expect(messages(page)).to_contain_text("was deleted successfully")
    assert not Record.objects.filter(collection=shop, key="order-2").exists()

    page.get_by_role("link", name="Recover deleted records").click()
    # Only the deleted record, with its collection; order-1 is live (SQLite once listed every record).
    rows = page.locator("#change-history tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("td.key")).to_have_text("order-2")
    expect(rows.locator("td.collection")).to_have_text("orders")
    expect(page.locator(".paginator")).to_contain_text("1 deleted record")
    rows.get_by_role("link").click()
    assert_shows_json(page.locator("#id_data"), {"status": "paid", "total": 12.5})
    page.click('input[name="_save"]')

    expect(messages(page)).to_contain_text(
        "Recovered order-2: it is now at version 3, with the data it had when it was deleted."
    )
    record = Record.objects.get(collection=shop, key="order-2")
    assert (record.version, record.data) == (3, {"status": "paid", "total": 12.5})


def test_the_recover_list_pages_through_deleted_records_only(shop, signed_in: Page):
    page = signed_in
    total = RECOVER_PER_PAGE + 3
    for n in range(total):
        services.record_create(
            collection=shop, key=f"gone-{n:03}", data={"status": "new", "total": n}, actor=TEST_ACTOR
        )
        services.record_delete(collection=shop, key=f"gone-{n:03}", actor=TEST_ACTOR)

    page.goto("/admin/core/record/")
    page.get_by_role("link", name="Recover deleted records").click()
    rows = page.locator("#change-history tbody tr")
    expect(rows).to_have_count(RECOVER_PER_PAGE)
    expect(page.locator(".paginator")).to_contain_text(f"{total} deleted records, page 1 of 2")
    first = rows.locator("td.key").all_inner_texts()
    page.get_by_role("link", name="next").click()
    expect(rows).to_have_count(3)
    expect(rows.locator("td.collection")).to_have_text(["orders"] * 3)
    keys = first + rows.locator("td.key").all_inner_texts()

    assert sorted(keys) == [f"gone-{n:03}" for n in range(total)]  # each once; order-1 and order-2 live
    assert Record.objects.filter(collection=shop).count() == 2
