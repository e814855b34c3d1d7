"""Chromium logs in through a real, independent OpenID provider: the ``oidc-provider`` npm
package (``tests/support/oidc``), configured as a discovered provider (``ISSUER_OIDC_PROVIDERS``)
of the app running under hypercorn. The browser clicks the login page's button, signs in and
consents on the provider's own pages, and lands on the dashboard; it logs in again to the same
account, links the provider to a password account, and is refused removing its last login
method."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from issuer.issuance.agents.local import free_port
from tests.browser.conftest import TIMEOUT_MS, Watcher, submit_login
from tests.browser.test_accounts_browser import PASSWORD, serve
from tests.support.oidc_provider import OidcProvider, oidc_provider, sign_in_at_provider
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser

CLIENT_ID = "issuer-portal"
CLIENT_SECRET = "a-client-secret-for-tests"
TITLE = "Node OIDC"


@dataclass
class Deployment:
    app: ServerProcess
    provider: OidcProvider

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    port = free_port()
    # One host name for both (cookies are per host; SameSite needs the same site).
    callback = f"http://127.0.0.1:{port}/login/node/callback"
    async with oidc_provider(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[callback],
        token_auth_method="client_secret_basic",
    ) as provider:  # fmt: skip
        entry = {"name": "node", "title": TITLE, "issuer": provider.issuer,
                 "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}  # fmt: skip
        extra = {
            "ISSUER_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "ISSUER_OIDC_PROVIDERS": json.dumps([entry]),
        }
        # serve() migrates with Alembic (asyncio.run) and waits for hypercorn: in a thread.
        running = serve(tmp_path, port, extra)
        server = await asyncio.to_thread(next, running)
        try:
            yield Deployment(server, provider)
        finally:
            await asyncio.to_thread(next, running, None)


async def log_in_with_provider(page: Page, deployment: Deployment, login: str) -> None:
    await page.goto(f"{deployment.base}/login")
    await page.get_by_role("link", name=f"Log in with {TITLE}").click()
    await sign_in_at_provider(page, login)
    await expect(page).to_have_url(f"{deployment.base}/dashboard")


async def test_login_with_a_real_openid_provider(
    browser: Browser, page: Page, watched: Watcher, deployment: Deployment
) -> None:
    await log_in_with_provider(page, deployment, "ada")
    await expect(page.locator("#welcome")).to_have_text("Welcome, ada@example.test!")
    method = page.locator("#methods > li")
    await expect(method).to_have_count(1)
    await expect(method).to_contain_text(f"{TITLE} · ada User")
    # Its only way to log in: the dashboard shows the server's refusal.
    await method.get_by_role("button", name="Remove").click()
    await expect(page.locator("#error")).to_contain_text("This is your only way to log in")
    refused = "the server responded with a status of 400"
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{deployment.base}/login")

    # Again, in a fresh browser: the same account (keyed by the provider's subject).
    context = await browser.new_context(locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        again = await context.new_page()
        await log_in_with_provider(again, deployment, "ada")
        await expect(again.locator("#welcome")).to_have_text("Welcome, ada@example.test!")
        await expect(again.locator("#methods > li")).to_have_count(1)
    finally:
        await context.close()
    await watched.assert_clean(origin=deployment.base, expected=(refused,))


async def test_linking_the_provider_from_the_dashboard(
    page: Page, watched: Watcher, deployment: Deployment
) -> None:
    async with httpx.AsyncClient(base_url=deployment.app.url, timeout=15) as api:
        registered = await api.post("/register", json={"username": "grace", "password": PASSWORD})
        assert registered.status_code == 200, registered.text
    await page.goto(f"{deployment.base}/login")
    await submit_login(page, "grace", PASSWORD)
    await expect(page).to_have_url(f"{deployment.base}/dashboard")
    await expect(page.locator("#methods > li")).to_have_count(1)  # the password

    await page.get_by_role("button", name=f"Link {TITLE}").click()
    await sign_in_at_provider(page, "unverified-grace")
    await expect(page).to_have_url(f"{deployment.base}/dashboard#login-methods")
    linked = page.locator("#methods > li", has_text=TITLE)
    await expect(linked).to_contain_text("unverified-grace User")
    await expect(page.get_by_role("button", name=f"Link {TITLE}")).to_have_count(0)

    # With the password still there, the provider can be unlinked.
    await linked.get_by_role("button", name="Remove").click()
    await expect(page.locator("#methods > li", has_text=TITLE)).to_have_count(0)
    await expect(page.get_by_role("button", name=f"Link {TITLE}")).to_have_count(1)
    await watched.assert_clean(origin=deployment.base)
