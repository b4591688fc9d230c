"""Signing in to the admin and reading the control room, in a real browser."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_operator_signs_in_and_sees_the_state_of_the_service(shop, page: Page, operator_user):
    page.goto("/admin/")
    expect(page).to_have_title("Log in | Nucleus admin")
    expect(page.locator("#site-name")).to_have_text("Nucleus")

    sign_in(page, "alice", "not the password")
    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")

    sign_in(page, "alice", PASSWORD)
    expect(page).to_have_title("Control room | Nucleus admin")
    expect(page.locator("h1")).to_have_text("Control room")
    expect(page.locator("#nucleus-services")).to_have_text("2 active of 2")
    expect(page.locator("#nucleus-tokens")).to_contain_text("2 usable")
    expect(page.locator("#nucleus-collections")).to_contain_text("1 records collection holding 2 records")
    expect(page.locator("#nucleus-schemas")).to_have_text("1")
    expect(page.locator("#nucleus-migrations")).to_have_text("all applied")
    expect(page.locator("#nucleus-verified-backup")).to_contain_text(
        "⚠ none: no backup of this database has been verified"
    )
    orders = page.locator("#nucleus-collections-table tbody tr", has_text="orders")
    expect(orders.locator("td")).to_have_text(["orders", "checkout", "2", re.compile(r"\d+\sbytes")])
    stream = page.locator("#nucleus-streams-table tbody tr", has_text="order-events")
    expect(stream.locator("td")).to_have_text(["order-events", "checkout", "12", "2", "3"])

    stream.get_by_role("link", name="order-events").click()
    expect(page.locator("h1")).to_have_text("Select event to view")
    expect(page.locator("#result_list tbody tr")).to_have_count(12)


# Per label of "At a glance": its text, width, font size and the number of lines its text wraps onto.
MEASURE_LABELS = """ths => ths.map(th => {
  const tops = new Set();
  const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const rect of range.getClientRects()) if (rect.width > 0) tops.add(Math.round(rect.top));
  }
  return {text: th.innerText.trim(), width: th.getBoundingClientRect().width,
          fontSize: parseFloat(getComputedStyle(th).fontSize), lines: tops.size};
})"""


@pytest.mark.parametrize("width", [1440, 1024])
def test_a_fresh_install_shows_each_glance_label_on_one_line(page: Page, operator_user, width):
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, "alice", PASSWORD)
    # No backup yet: the two backup rows carry their longest warnings.
    expect(page.locator("#nucleus-backup")).to_contain_text("There is no usable backup")
    expect(page.locator("#nucleus-verified-backup")).to_contain_text("⚠ none")

    labels = page.locator("#nucleus-glance th[scope=row]")
    expect(labels).to_have_count(8)
    measured = labels.evaluate_all(MEASURE_LABELS)
    for label in measured:
        assert label["lines"] == 1, label
        assert label["width"] >= 6 * label["fontSize"], label
    assert [label["text"] for label in measured][-1] == "Newest verified backup"
    screenshot(page, f"admin-index-fresh-{width}")
