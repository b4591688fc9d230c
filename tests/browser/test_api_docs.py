"""/api/docs/ (Swagger UI) and /api/redoc/ render offline, from this origin only, within the CSP."""

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Watch, csp, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

# Both viewers build their pages from a large bundle and the whole OpenAPI document: seconds on a busy CI.
RENDERED = 30_000


@pytest.fixture
def offline(browser, live_server) -> Iterator[Watch]:
    """A tab in a browser profile of its own that reaches the live server only: any other host is aborted.

    As on a machine without a network; the test fails if a page even tried another host, had a
    JavaScript error or a Content-Security-Policy violation.
    """
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    aborted: list[str] = []

    def only_the_live_server(route) -> None:
        if route.request.url.startswith(live_server.url + "/"):
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_live_server)
    watch = Watch(context.new_page(), live_server.url)
    yield watch
    context.close()
    watch.check()
    assert not aborted, f"The page tried to reach other hosts: {aborted}"


def test_swagger_ui_lists_the_operations_offline(offline: Watch):
    page = offline.page
    response = page.goto("/api/docs/")

    policy = csp(response)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]  # nothing more
    operations = page.locator(".opblock-summary-path")
    expect(operations.first).to_be_visible(timeout=RENDERED)
    expect(operations.filter(has_text=re.compile(r"^/api/v1/collections/$"))).to_have_count(
        2, timeout=RENDERED
    )
    assert operations.count() > 20
    expect(page.locator(".info .title")).to_contain_text("Nucleus API")

    # The interactive part runs too: an operation opens with its parameters and "Try it out".
    page.locator(".opblock-get .opblock-summary", has_text="/api/v1/collections/").first.click()
    expect(page.get_by_role("button", name="Try it out")).to_be_visible(timeout=RENDERED)
    screenshot(page, "api-docs-swagger-ui", full_page=False)


def test_redoc_renders_the_document_offline(offline: Watch):
    # Redoc's sidebar always shows Redocly's logo from cdn.redoc.ly; the policy refuses it before any
    # request leaves the browser, and Redoc hides the image when it fails to load.
    offline.tolerate(r"cdn\.redoc\.ly/redoc/logo-mini\.svg")
    page = offline.page
    response = page.goto("/api/redoc/")

    policy = csp(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"] and policy["worker-src"] == [
        "'self'",
        "blob:",
    ]
    expect(page.locator("h1", has_text="Nucleus API")).to_be_visible(timeout=RENDERED)
    assert page.locator("li[data-item-id]").count() > 20  # the menu of operations
    expect(page.get_by_text("/api/v1/collections/{name}/records/").first).to_be_attached(timeout=RENDERED)
    screenshot(page, "api-docs-redoc", full_page=False)
