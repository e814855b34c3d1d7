"""Chromium drives the account pages: login, the dashboard's sessions, and the emailed links.

Each test gets its own hypercorn subprocess on a fresh migrated SQLite file, with a REST agent
pointing at a closed port (no ACA-Py starts) and, for the email links, a real SMTP server.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from issuer.issuance.agents.local import free_port
from tests.browser.conftest import Watcher, submit_login
from tests.conftest import migrate
from tests.outbox.conftest import Mail, SmtpServer
from tests.support.servers import ServerProcess, stop_gracefully

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
NEW_PASSWORD = "new staple battery horse"
HTTP_TIMEOUT = 15.0
MAIL_TIMEOUT = 15.0


def serve(root: Path, port: int, extra: dict[str, str]) -> Iterator[ServerProcess]:
    """A fresh app in development (cookies over plain http) with no agent subprocess."""
    url = f"sqlite+aiosqlite:///{root / 'issuer.db'}"
    migrate(url)
    env = {
        "ISSUER_ENV": "development",
        "ISSUER_DATABASE_URL": url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_AGENT": "rest",
        "ISSUER_REST_CONNECTION_URL": "http://127.0.0.1:9",
        "ISSUER_REST_ISSUER_URL": "http://127.0.0.1:9",
        # Empty = unset, whatever the environment says.
        "ISSUER_ACAPY_ADMIN_URL": "",
        "ISSUER_TEST_WALLET_ADMIN_URL": "",
        "ISSUER_SMTP_HOST": "",
        "ISSUER_REDIS_URL": "",
        "ISSUER_AMQP_URL": "",
        # Cheap hashing (allowed outside production): these tests are about pages.
        "ISSUER_ARGON2_MEMORY_KIB": "1024",
        "ISSUER_ARGON2_TIME_COST": "1",
        **extra,
    }
    server = ServerProcess(port, env, root / "server.log")
    try:
        server.start()
        yield server
    finally:
        stop_gracefully(server)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from serve(tmp_path, free_port(), {})


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    smtp = SmtpServer().start()
    try:
        yield smtp
    finally:
        smtp.stop()


@pytest.fixture
def mail_server(tmp_path: Path, smtp: SmtpServer) -> Iterator[ServerProcess]:
    port = free_port()
    yield from serve(
        tmp_path,
        port,
        {
            "ISSUER_SMTP_HOST": "127.0.0.1",
            "ISSUER_SMTP_PORT": str(smtp.port),
            "ISSUER_SMTP_SECURITY": "none",
            "ISSUER_SMTP_TIMEOUT": "5",
            "ISSUER_PUBLIC_BASE_URL": f"http://localhost:{port}",
            "ISSUER_OUTBOX_POLL_INTERVAL": "0.1",
            "ISSUER_OUTBOX_BACKOFF": "0.2",
        },
    )


def link_in(mail: Mail, base: str) -> str:
    """The one link to ``base`` in the mail's plain-text body."""
    links = re.findall(re.escape(base) + r"/[^\s<>\"]+", mail.text)
    assert len(links) == 1, mail.text
    return str(links[0])


async def test_login_dashboard_and_ending_sessions(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    username = "ada.lovelace"
    async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as api:
        registered = await api.post("/register", json={"username": username, "password": PASSWORD})
        assert registered.status_code == 200, registered.text
        login = await api.post("/login", json={"username": username, "password": PASSWORD})
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (await api.get("/auth/status", headers=bearer)).status_code == 200

        response = await page.goto(f"{base}/login")
        assert response is not None and response.ok
        await submit_login(page, username, PASSWORD)
        await expect(page).to_have_url(f"{base}/dashboard")
        await expect(page.locator("#welcome")).to_have_text(f"Welcome, {username}!")

        rows = page.locator("#sessions > li")
        await expect(rows).to_have_count(2)
        mine = rows.filter(has_text="(this browser)")
        other = rows.filter(has_not_text="(this browser)")
        await expect(mine).to_have_count(1)
        await expect(other).to_have_count(1)
        await expect(mine).to_contain_text("browser")
        await expect(other).to_contain_text("api")
        await page.evaluate("window.__marker = 1")

        # End the API session: its row goes away in place, and its token stops working.
        await other.get_by_role("button", name="End").click()
        await expect(rows).to_have_count(1)
        await expect(mine).to_have_count(1)
        assert await page.evaluate("window.__marker") == 1, "the page was reloaded"
        assert page.url == f"{base}/dashboard"
        status = await api.get("/auth/status", headers=bearer)
        assert status.status_code == 401, status.text

        # End this browser's own session: back to the login page, and it stays logged out.
        await watched.assert_clean()
        await mine.get_by_role("button", name="End").click()
        await expect(page).to_have_url(f"{base}/login")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        await page.goto(f"{base}/dashboard")
        await expect(page).to_have_url(f"{base}/login")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        await watched.assert_clean()


async def test_email_links(
    page: Page, watched: Watcher, mail_server: ServerProcess, smtp: SmtpServer
) -> None:
    base = f"http://localhost:{mail_server.port}"
    address = "grace@example.org"
    mailbox = smtp.mailbox
    result = page.locator("#result")
    failed_loads: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Failed to load resource" in message.text:
            failed_loads.append(message.location["url"].removeprefix(base))

    page.on("console", on_console)
    async with httpx.AsyncClient(base_url=mail_server.url, timeout=HTTP_TIMEOUT) as api:
        signup = await api.post("/signup", json={"email": address, "password": PASSWORD})
        assert signup.status_code == 200, signup.text
        (verification,) = await mailbox.wait(address, 1, timeout=MAIL_TIMEOUT)
        verify_link = link_in(verification, f"{base}/verify")

        # The link confirms once; the same link again is refused.
        for expected, outcome in (
            ("You have confirmed your account. Thanks!", "success"),
            ("The confirmation link is invalid or has expired.", "failure"),
        ):
            response = await page.goto(verify_link)
            assert response is not None and response.ok
            assert response.headers["referrer-policy"] == "no-referrer"
            await page.get_by_role("button", name="Confirm my email address").click()
            await expect(result).to_be_visible()
            await expect(result).to_have_text(expected)
            await expect(result).to_have_class(f"result {outcome}")
            if outcome == "success":
                await watched.assert_clean()
        # Chromium logs the refused POST's 400 as a console error: that one, and nothing else.
        assert failed_loads == [verify_link.replace(base, "", 1)], failed_loads
        watched.forget("status of 400")
        await watched.assert_clean()

        response = await page.goto(f"{base}/forgot_password")
        assert response is not None and response.ok
        await page.get_by_label("Email address").fill(address)
        await page.get_by_role("button", name="Send me a reset link").click()
        await expect(result).to_have_text("Password reset email sent to the user")

        mails = await mailbox.wait(address, 2, timeout=MAIL_TIMEOUT)
        reset_link = link_in(mails[1], f"{base}/reset_password")
        response = await page.goto(reset_link)
        assert response is not None and response.ok
        assert response.headers["referrer-policy"] == "no-referrer"
        await page.get_by_label("New password").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Set password").click()
        await expect(result).to_have_text(
            "Your password has been updated! You are now able to log in."
        )
        await expect(result).to_have_class("result success")

        new = await api.post("/login", json={"email": address, "password": NEW_PASSWORD})
        assert new.status_code == 200, new.text
        old = await api.post("/login", json={"email": address, "password": PASSWORD})
        assert old.status_code == 401, old.text
        await watched.assert_clean()
