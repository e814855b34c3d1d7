"""Browser fixtures: the portal served like ``make run`` does, and a headless Debian Chromium."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Frame,
    Page,
    async_playwright,
    expect,
)

from issuer.issuance.agents.local import free_port
from tests.conftest import migrate
from tests.support.acapy import acapy_binary
from tests.support.servers import SHORT_GRACE, ServerProcess, stop_gracefully

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
# Assertions wait as long as actions (Playwright's own default is 5 s): a real agent's connection
# on a loaded 2-core machine can take longer. A passing assertion returns as soon as it holds.
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``make run``: development, a fresh migrated SQLite file and no agent configured, so the
    app starts its own ACA-Py issuer and test wallet (webhooks to ``$PORT``)."""
    root = tmp_path_factory.mktemp("portal")
    url = f"sqlite+aiosqlite:///{root / 'issuer.db'}"
    migrate(url)
    env = {
        "ISSUER_ENV": "development",
        "ISSUER_DATABASE_URL": url,
        "ISSUER_ACAPY_BIN": acapy_binary(),
        # Empty = unset: whatever the environment or a local .env says, no agent is configured.
        "ISSUER_ACAPY_ADMIN_URL": "",
        "ISSUER_REST_ISSUER_URL": "",
        "ISSUER_TEST_WALLET_ADMIN_URL": "",
        "ISSUER_WEBHOOK_API_KEY": "",
    }
    server = ServerProcess(free_port(), env, root / "server.log", args=SHORT_GRACE)
    try:
        server.start()
        yield server
    finally:
        stop_gracefully(server)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


# Recorded from the start: CSP violations also surface as events, not only console lines.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class Watcher:
    """Everything the page said or did that a test may want to assert on."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.console_urls: list[str] = []  # where each console message came from
        self.errors: list[str] = []
        self.navigations: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._error)
        page.on("framenavigated", self._navigated)

    def _console(self, message: ConsoleMessage) -> None:
        # The browser's own favicon probe 404s (the portal has no favicon); nothing else may.
        url = message.location.get("url", "")
        if not url.endswith("/favicon.ico"):
            self.console.append(f"{message.type}: {message.text}")
            self.console_urls.append(url)

    def _error(self, error: Error) -> None:
        self.errors.append(str(error))

    def _navigated(self, frame: Frame) -> None:
        if frame == self.page.main_frame:
            self.navigations.append(frame.url)

    def forget(self, *texts: str) -> None:
        """Drop console messages containing any of ``texts`` (ones the test caused)."""
        kept = [
            (m, url) for m, url in zip(self.console, self.console_urls, strict=True)
            if not any(t in m for t in texts)
        ]  # fmt: skip
        self.console = [m for m, _ in kept]
        self.console_urls = [url for _, url in kept]

    async def assert_clean(self, *, origin: str = "", expected: tuple[str, ...] = ()) -> None:
        """No script errors, no console errors or warnings, no CSP violations. ``origin``:
        only the console of pages there counts (another site's pages, such as an identity
        provider's, are not ours); ``expected``: messages the test caused on purpose."""
        violations = await self.page.evaluate("window.__cspViolations")
        assert violations == [], violations
        assert self.errors == [], self.errors
        noisy = [
            m
            for m, url in zip(self.console, self.console_urls, strict=True)
            if m.split(":", 1)[0] in ("error", "warning")
            and url.startswith(origin)
            and not any(e in m for e in expected)
        ]
        assert noisy == [], noisy


@pytest.fixture
async def watched(page: Page) -> Watcher:
    await page.add_init_script(WATCH_CSP)
    return Watcher(page)


async def submit_login(page: Page, username: str, password: str) -> None:
    """Fill the login form the page shows and send it."""
    await page.get_by_label("Username or email").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
