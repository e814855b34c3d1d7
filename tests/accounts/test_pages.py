"""The browser side (002): form pages with CSRF, the quart-auth cookie session, the dashboard."""

from __future__ import annotations

import re
from typing import Any

from quart import Quart

from tests.accounts.conftest import (
    PASSWORD,
    BrowserClient,
    assert_error,
    bearer,
    claims_of,
    from_ip,
    register,
    register_and_login,
    running,
)

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def form_csrf(browser: Any, path: str) -> str:
    response = await browser.get(path)
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    assert '<form method="post"' in page
    match = CSRF_FIELD.search(page)
    assert match, page
    return match.group(1)


async def browser_login(browser: Any, username: str = "alice", password: str = PASSWORD) -> Any:
    csrf = await form_csrf(browser, "/login")
    return await browser.post(
        "/login", form={"username": username, "password": password, "csrf_token": csrf}
    )


async def dashboard_csrf(browser: Any) -> str:
    page = await (await browser.get("/dashboard")).get_data(as_text=True)
    return re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def cookie_header(response: Any, name: str) -> str:
    for value in response.headers.getlist("Set-Cookie"):
        if value.startswith(f"{name}="):
            return str(value)
    raise AssertionError(f"no {name} cookie in {response.headers.getlist('Set-Cookie')}")


async def test_form_pages_carry_a_csrf_field(browser: Any) -> None:
    for path in ("/login", "/register"):
        assert len(await form_csrf(browser, path)) >= 32


async def test_browser_login_dashboard_and_end_session(browser: Any) -> None:
    await register(browser)
    response = await browser_login(browser)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/dashboard")
    cookie = cookie_header(response, "issuer_auth")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    page = await (await browser.get("/dashboard")).get_data(as_text=True)
    assert "Welcome, alice!" in page and "(this browser)" in page
    assert (await browser.get("/dashboard/alice")).status_code == 200
    assert (await browser.get("/dashboard/ALICE")).status_code == 200
    await assert_error(await browser.get("/dashboard/bob"), 403)
    # The cookie also authenticates the JSON API for reading.
    listed = await (await browser.get("/sessions")).get_json()
    (row,) = listed["sessions"]
    assert row["current"] is True and row["kind"] == "browser"
    # Changing state with the cookie needs the CSRF token.
    await assert_error(await browser.delete(f"/sessions/{row['id']}"), 403, code="csrf_failed")
    await assert_error(
        await browser.delete(f"/sessions/{row['id']}", headers={"X-CSRF-Token": "forged"}), 403
    )
    assert (await browser.get("/dashboard")).status_code == 200  # still logged in
    csrf = await dashboard_csrf(browser)
    response = await browser.delete(f"/sessions/{row['id']}", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    response = await browser.get("/dashboard")
    assert response.status_code in (302, 303) and response.headers["Location"].endswith("/login")
    await assert_error(await browser.get("/sessions"), 401)


async def test_csrf_token_changes_at_login(browser: Any) -> None:
    await register(browser)
    before = await form_csrf(browser, "/login")
    response = await browser.post(
        "/login", form={"username": "alice", "password": PASSWORD, "csrf_token": before}
    )
    assert response.status_code == 303
    after = await dashboard_csrf(browser)
    assert after != before
    await assert_error(
        await browser.post("/update_password", headers={"X-CSRF-Token": before}, json={"x": 1}),
        403,
    )


async def test_ending_the_browser_session_from_the_api(app: Quart, browser: Any) -> None:
    """One session row behind the cookie: ending it through a token ends the browser too."""
    await register(browser)
    assert (await browser_login(browser)).status_code == 303
    api = app.test_client()
    token = (await register_and_login(api))["token"]
    listed = await (await api.get("/sessions", headers=bearer(token))).get_json()
    cookie_rows = [s for s in listed["sessions"] if s["kind"] == "browser"]
    assert len(cookie_rows) == 1 and cookie_rows[0]["id"] != claims_of(token)["sid"]
    response = await api.delete(f"/sessions/{cookie_rows[0]['id']}", headers=bearer(token))
    assert response.status_code == 200
    assert (await browser.get("/dashboard")).status_code in (302, 303)


async def test_cookie_logout_needs_csrf(browser: Any) -> None:
    await register(browser)
    await browser_login(browser)
    await assert_error(await browser.post("/logout"), 403, code="csrf_failed")
    await assert_error(await browser.post("/logout", form={"csrf_token": "forged"}), 403)
    csrf = await dashboard_csrf(browser)
    response = await browser.post("/logout", form={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    assert (await browser.get("/dashboard")).status_code in (302, 303)


async def test_browser_login_failures(browser: Any) -> None:
    await register(browser)
    response = await browser_login(browser, password="wrong password")
    assert response.status_code == 401
    assert "Invalid credentials" in await response.get_data(as_text=True)
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("issuer_auth=")]
    # Without the CSRF token of this browser's session: refused, no session.
    response = await browser.post(
        "/login", form={"username": "alice", "password": PASSWORD, "csrf_token": "x" * 43}
    )
    assert response.status_code == 403
    response = await browser.post("/login", form={"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert (await browser.get("/dashboard")).status_code in (302, 303)


async def test_dashboard_needs_a_login(browser: Any) -> None:
    for path in ("/dashboard", "/dashboard/alice"):
        response = await browser.get(path)
        assert response.status_code in (302, 303) and response.headers["Location"].endswith(
            "/login"
        )


async def test_form_register(browser: Any) -> None:
    csrf = await form_csrf(browser, "/register")
    response = await browser.post(
        "/register", form={"username": "dave", "password": PASSWORD, "csrf_token": csrf}
    )
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    csrf = await form_csrf(browser, "/register")
    response = await browser.post(
        "/register", form={"username": "Dave", "password": PASSWORD, "csrf_token": csrf}
    )
    assert response.status_code == 400
    assert "Username already taken" in await response.get_data(as_text=True)
    response = await browser.post(
        "/register", form={"username": "erin", "password": "short", "csrf_token": csrf}
    )
    assert response.status_code == 422
    response = await browser.post("/register", form={"username": "erin", "password": PASSWORD})
    assert response.status_code == 403
    assert (await browser_login(browser, "dave")).status_code == 303


async def test_browser_sessions_record_the_client_behind_a_trusted_proxy(
    overrides: dict[str, Any],
) -> None:
    async with running(overrides, trusted_proxies="10.0.0.1") as app:
        browser = BrowserClient(app)
        await register(browser)
        csrf = await form_csrf(browser, "/login")
        response = await browser.post(
            "/login",
            form={"username": "alice", "password": PASSWORD, "csrf_token": csrf},
            headers={"X-Forwarded-For": "203.0.113.9"},
            **from_ip("10.0.0.1"),
        )
        assert response.status_code == 303
        (row,) = (await (await browser.get("/sessions")).get_json())["sessions"]
        assert row["ip"] == "203.0.113.9" and row["kind"] == "browser"
