"""Browser tests: Playwright drives Debian's headless Chromium through the admin on a real HTTP server.

pytest-django's `live_server` serves the test database (and the admin's static files) over HTTP.
Playwright's sync API keeps an asyncio event loop running in this thread while the browser is open,
so Django would refuse the ORM calls the tests make to set up data and check the database;
DJANGO_ALLOW_ASYNC_UNSAFE allows them while the browser runs, for this package only.

Without Chromium (`apt-get install chromium`) the tests skip with a reason; NUCLEUS_REQUIRE_BROWSER=1
(set by .ci/run) turns the skip into a failure. Screenshots of key pages are written to
NUCLEUS_SCREENSHOT_DIR (default var/artifacts/screenshots).
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from core import services
from core.models import Collection
from schemas import services as schema_services
from tests.actors import TEST_ACTOR

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"  # the `operator_user` fixture's, user alice

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["new", "paid", "shipped"]},
        "total": {"type": "number", "minimum": 0},
    },
    "required": ["status", "total"],
}


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        reason = "needs Chromium: apt-get install chromium"
        if os.environ.get("NUCLEUS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (NUCLEUS_REQUIRE_BROWSER=1 forbids skipping)")
        pytest.skip(reason)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield browser
        browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser_context(browser, live_server) -> Iterator[BrowserContext]:
    """One browser profile for the package, so the admin's static files come from its cache."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    yield context
    context.close()


# Run in every document before its own scripts: reports what the Content-Security-Policy refused.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", event => window.nucleusCspViolation(
  `${event.violatedDirective} refused ${event.blockedURI || "inline code"} on ${event.documentURI}`));
"""


class Watch:
    """What went wrong on a tab: JavaScript errors, CSP violations, requests that left the live server."""

    def __init__(self, tab: Page, origin: str):
        self.page = tab
        self.origin = origin
        self.errors: list[str] = []
        self.violations: list[str] = []
        self.foreign: list[str] = []
        self.tolerated: list[re.Pattern] = []
        tab.expose_function("nucleusCspViolation", lambda text: self.violations.append(text))
        tab.add_init_script(REPORT_CSP_VIOLATIONS)
        tab.on("pageerror", lambda error: self.errors.append(str(error)))
        tab.on("console", self._console)
        tab.on("request", self._request)

    def _console(self, message) -> None:
        # Chromium also logs each refusal on the console, with the directive and the source.
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)

    def _request(self, request) -> None:
        if not request.url.startswith((self.origin + "/", "data:", "blob:")):
            self.foreign.append(request.url)

    def tolerate(self, pattern: str) -> None:
        """Let violations and blocked requests matching this pattern pass; each test names its own."""
        self.tolerated.append(re.compile(pattern))

    def check(self) -> None:
        def unexpected(found: list[str]) -> list[str]:
            return [text for text in found if not any(p.search(text) for p in self.tolerated)]

        assert not self.errors, f"JavaScript errors on the pages: {self.errors}"
        assert not unexpected(self.violations), f"Content-Security-Policy violations: {self.violations}"
        assert not unexpected(self.foreign), f"Requests to other origins: {self.foreign}"


@pytest.fixture
def page(browser_context, live_server) -> Iterator[Page]:
    """A new tab without cookies (signed out) on the live server.

    Any JavaScript error, Content-Security-Policy violation or request to another origin fails the test.
    """
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    watch = Watch(tab, live_server.url)
    yield tab
    tab.close()
    watch.check()


@pytest.fixture
def signed_in(page, operator_user) -> Page:
    """The tab, signed in to the admin as the operator alice, on the control room."""
    sign_in(page, "alice", PASSWORD)
    expect(page.locator("h1")).to_have_text("Control room")
    return page


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click('input[type="submit"]')


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot (of the whole page, or of the window) as an artifact of the run; returns its path."""
    folder = Path(os.environ.get("NUCLEUS_SCREENSHOT_DIR") or ROOT / "var" / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def csp(response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy as directive: sources."""
    directives = (part.split() for part in response.headers["content-security-policy"].split(";"))
    return {name: sources for name, *sources in directives if name}


def messages(page: Page):
    """The admin's message list (success, warning and error messages after an action)."""
    return page.locator("ul.messagelist")


@pytest.fixture
def shop(transactional_db) -> Collection:
    """A small world: `checkout` owns `orders` (bound to schema `order`, two records) and a stream."""
    checkout, _ = services.service_ensure(actor=TEST_ACTOR, name="checkout", description="the web shop")
    services.token_issue(actor=TEST_ACTOR, service=checkout, label="production")
    billing, _ = services.service_ensure(actor=TEST_ACTOR, name="billing", description="invoices")
    services.token_issue(actor=TEST_ACTOR, service=billing, label="production")
    schema = schema_services.schema_create(name="order", owner=checkout)
    schema_services.schema_version_register(schema=schema, definition=ORDER_SCHEMA, actor=TEST_ACTOR)
    orders = services.collection_create(
        actor=TEST_ACTOR, name="orders", owner=checkout, schema=schema, description="orders of the shop"
    )
    services.grant_set(actor=TEST_ACTOR, collection=orders, service_name="billing", access="read")
    services.record_create(
        collection=orders, key="order-1", data={"status": "new", "total": 25}, actor=TEST_ACTOR
    )
    services.record_create(
        collection=orders, key="order-2", data={"status": "paid", "total": 12.5}, actor=TEST_ACTOR
    )
    stream = services.collection_create(actor=TEST_ACTOR, name="order-events", owner=checkout, kind="stream")
    services.stream_append(
        stream=stream,
        events=[{"type": "order.placed", "data": {"order": n}} for n in range(1, 13)],
        actor=TEST_ACTOR,
    )
    services.consumer_position_set(stream=stream, consumer="billing", offset=9, actor=TEST_ACTOR)
    services.consumer_position_set(stream=stream, consumer="audit", offset=12, actor=TEST_ACTOR)
    return orders


@pytest.fixture
def backup_dir(tmp_path, settings) -> Path:
    """Backups of this test go to a folder of its own, through the storage Django configures."""
    folder = tmp_path / "backups"
    settings.NUCLEUS_BACKUP_DIR = folder
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder), "file_permissions_mode": 0o600},
        },
    }
    return folder
