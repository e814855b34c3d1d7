"""Browser fixtures: the portal served like ``make run`` does, and a headless Debian Chromium."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

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
