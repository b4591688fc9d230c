"""Services and tokens in the admin, in a real browser: a new service's token is shown once; revoking."""

import hashlib
import json
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from core.models import Service, ServiceToken
from tests.browser.conftest import messages, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN_RE = re.compile(r"nuc_[A-Za-z0-9_-]{20,}")


def api_status(base_url: str, token: str) -> int:
    """The status of GET /api/v1/collections/ with this bearer token, over real HTTP."""
    request = urllib.request.Request(
        f"{base_url}/api/v1/collections/", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_new_service_gets_a_token_shown_once_which_can_be_revoked(shop, signed_in: Page, live_server):
    page = signed_in
    page.locator("#nucleus-glance").get_by_role("link", name="Services").click()
    page.get_by_role("link", name="Add service").click()
    expect(page.locator("#id_issue_token")).to_be_checked()
    page.fill("#id_name", "taxon")
    page.fill("#id_description", "classifies items")
    page.click('input[name="_save"]')

    shown = messages(page).locator("li.warning")
    expect(shown).to_contain_text("New token for taxon (copy it now; it is not shown again): nuc_")
    (token,) = TOKEN_RE.findall(shown.inner_text())
    screenshot(page, "admin-service-token")
    service = Service.objects.get(name="taxon")
    stored = ServiceToken.objects.get(service=service)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert api_status(live_server.url, token) == 200

    page.reload()
    expect(page.locator("#result_list")).to_contain_text("taxon")
    assert token not in page.content()
    page.locator("#result_list").get_by_role("link", name="taxon").click()
    expect(page.locator(".inline-group")).to_contain_text(stored.prefix)
    assert token not in page.content()

    page.get_by_role("link", name="Home").click()
    page.locator("#nucleus-glance").get_by_role("link", name="Tokens").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)  # checkout's, billing's, taxon's
    page.locator(f'input[name="_selected_action"][value="{stored.pk}"]').check()
    page.select_option('select[name="action"]', "revoke")
    page.click('button[name="index"]')

    expect(messages(page)).to_contain_text("Revoked 1 token.")
    stored.refresh_from_db()
    assert stored.revoked_at is not None
    assert api_status(live_server.url, token) == 401
