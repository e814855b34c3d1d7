"""The browser's redirect flow (``/login/<provider>`` → provider → callback), with the test
client as the browser and the provider stubs answering the authorization requests."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from quart import Quart

from tests.accounts.conftest import PASSWORD, BrowserClient, sql
from tests.mfa.conftest import enrol
from tests.social.conftest import counts
from tests.support.identity_providers import GitHubUser, ProviderStubs, s256

ADA = GitHubUser(
    id=7, login="ada", name="Ada Lovelace",
    emails=[{"email": "ada@example.test", "primary": True, "verified": True}],
)  # fmt: skip


def csrf_of(page: str) -> str:
    return page.split('name="csrf_token" value="')[1].split('"')[0]


async def start(browser: BrowserClient, name: str) -> dict[str, str]:
    """``GET /login/<name>``: the query of the provider's authorization URL it redirects to."""
    response = await browser.get(f"/login/{name}")
    assert response.status_code == 302, await response.get_data(as_text=True)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


async def start_link(browser: BrowserClient, name: str, dashboard: str) -> dict[str, str]:
    """The dashboard's "Link" button: ``POST /login/<name>`` with the page's CSRF token."""
    csrf = dashboard.split('data-csrf="')[1].split('"')[0]
    started = await browser.post(f"/login/{name}", headers={"X-CSRF-Token": csrf})
    assert started.status_code == 200, await started.get_data(as_text=True)
    location = (await started.get_json())["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def at_provider(location_query: dict[str, str], authorize: str) -> str:
    """What the provider does in the browser: its authorization endpoint redirects back to
    our callback; the callback's path and query."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(authorize, params=location_query)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    return f"{back.path}?{back.query}"


async def test_github_login_in_the_browser(
    app: Quart, browser: BrowserClient, providers: ProviderStubs
) -> None:
    providers.github_authorize_as = ADA
    query = await start(browser, "github")
    assert query["redirect_uri"] == "http://localhost:5000/login/github/callback"
    assert query["code_challenge_method"] == "S256" and len(query["state"]) >= 32
    callback = await at_provider(query, f"{providers.base}/github/login/oauth/authorize")
    response = await browser.get(callback)
    assert response.status_code == 303, await response.get_data(as_text=True)
    assert response.headers["Location"] == "/dashboard"
    page = await (await browser.get("/dashboard")).get_data(as_text=True)
    assert "Welcome, ada@example.test!" in page and "GitHub · Ada Lovelace" in page
    # The stub checked the PKCE verifier against the challenge.
    sent = next(form for path, form in providers.requests if path.endswith("/access_token"))
    assert s256(sent["code_verifier"]) == query["code_challenge"]
    # The state is spent: replaying the callback is refused.
    replay = await browser.get(callback)
    assert replay.status_code == 401
    assert "did not start here or has expired" in await replay.get_data(as_text=True)


async def test_a_callback_with_another_state_is_refused(
    app: Quart, browser: BrowserClient, providers: ProviderStubs
) -> None:
    providers.oidc["google"].authorize_as = {"sub": "eve"}
    query = await start(browser, "google")
    assert query["nonce"] and query["scope"] == "openid email profile"
    callback = await at_provider(query, f"{providers.base}/oidc/google/authorize")
    forged = callback.replace(f"state={query['state']}", "state=attacker-state")
    before = await counts(app)
    response = await browser.get(forged)
    assert response.status_code == 401
    page = await response.get_data(as_text=True)
    assert "This sign-in did not start here or has expired" in page and 'id="first-step"' in page
    # RFC 9207: an answer naming another issuer is refused (a mix-up attack).
    query = await start(browser, "google")
    callback_ok = await at_provider(query, f"{providers.base}/oidc/google/authorize")
    mixed = await browser.get(callback_ok.replace("iss=", "iss=https%3A%2F%2Fevil.example&x="))
    assert mixed.status_code == 401
    assert "The answer did not come from Google." in await mixed.get_data(as_text=True)
    # A callback this browser never started (someone else's link) is refused too.
    stranger = BrowserClient(app)
    assert (await stranger.get(callback)).status_code == 401
    assert await counts(app) == before


async def test_an_oidc_login_checks_the_nonce(
    app: Quart, browser: BrowserClient, providers: ProviderStubs
) -> None:
    google = providers.oidc["google"]
    query = await start(browser, "google")
    # The provider puts another login's nonce into the ID token.
    google.authorize_as = {"sub": "ada"}
    forged = {**query, "nonce": "another-login"}
    callback = await at_provider(forged, f"{providers.base}/oidc/google/authorize")
    response = await browser.get(callback)
    assert response.status_code == 401
    assert "does not belong to this login" in await response.get_data(as_text=True)
    # The genuine flow works.
    query = await start(browser, "google")
    response = await browser.get(
        await at_provider(query, f"{providers.base}/oidc/google/authorize")
    )
    assert response.status_code == 303, await response.get_data(as_text=True)


async def test_a_logged_in_browser_links_the_provider(
    app: Quart, browser: BrowserClient, providers: ProviderStubs
) -> None:
    await browser.post("/register", json={"username": "ada", "password": PASSWORD})
    page = await (await browser.get("/login")).get_data(as_text=True)
    csrf = csrf_of(page)
    login = await browser.post(
        "/login", form={"username": "ada", "password": PASSWORD, "csrf_token": csrf}
    )
    assert login.status_code == 303
    dashboard = await (await browser.get("/dashboard")).get_data(as_text=True)
    assert 'data-provider="github"' in dashboard and "Link GitHub" in dashboard
    providers.github_authorize_as = ADA
    # A link needs the page's CSRF token (another site cannot start one)...
    refused = await browser.post("/login/github", headers={"X-CSRF-Token": "forged"})
    assert refused.status_code == 403
    # ... and a plain GET is a sign-in, never a link.
    assert (await browser.get("/login/github")).status_code == 302
    query = await start_link(browser, "github", dashboard)
    response = await browser.get(
        await at_provider(query, f"{providers.base}/github/login/oauth/authorize")
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard#login-methods"
    rows = await sql(app, "SELECT u.username FROM identities i JOIN users u ON u.id = i.user_id")
    assert rows == [("ada",)]
    dashboard = await (await browser.get("/dashboard")).get_data(as_text=True)
    assert "Link GitHub" not in dashboard and "GitHub · Ada Lovelace" in dashboard


async def test_a_link_completes_only_in_the_login_that_started_it(
    app: Quart, browser: BrowserClient, providers: ProviderStubs
) -> None:
    await browser.post("/register", json={"username": "ada", "password": PASSWORD})
    login = await browser.post(
        "/login",
        form={"username": "ada", "password": PASSWORD,
              "csrf_token": csrf_of(await (await browser.get("/login")).get_data(as_text=True))},
    )  # fmt: skip
    assert login.status_code == 303
    dashboard = await (await browser.get("/dashboard")).get_data(as_text=True)
    query = await start_link(browser, "corp", dashboard)
    callback = await at_provider(query, f"{providers.base}/oidc/corp/authorize")
    # The browser logs out and in again meanwhile (another login session).
    page = await (await browser.get("/dashboard")).get_data(as_text=True)
    await browser.post("/logout", form={"csrf_token": csrf_of(page)})
    again = await browser.post(
        "/login",
        form={"username": "ada", "password": PASSWORD,
              "csrf_token": csrf_of(await (await browser.get("/login")).get_data(as_text=True))},
    )  # fmt: skip
    assert again.status_code == 303
    # The logout cleared the browser session, and with it the link's state.
    response = await browser.get(callback)
    assert response.status_code == 401
    assert await sql(app, "SELECT count(*) FROM identities") == [(0,)]


async def test_an_mfa_account_is_asked_for_its_second_factor(
    app: Quart, client: Any, browser: BrowserClient, providers: ProviderStubs
) -> None:
    await client.post("/register", json={"email": "ada@other.example", "password": PASSWORD})
    login = await client.post("/login", json={"email": "ada@other.example", "password": PASSWORD})
    token = (await login.get_json())["access_token"]
    providers.oidc["corp"].authorize_as = {"sub": "ada"}
    linked = await client.post(
        "/social/corp",
        json={"code": providers.oidc["corp"].grant("ada")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert linked.status_code == 200, await linked.get_data(as_text=True)
    await enrol(client, token)
    query = await start(browser, "corp")
    response = await browser.get(await at_provider(query, f"{providers.base}/oidc/corp/authorize"))
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    assert 'data-methods="totp,recovery_code"' in page
    assert "issuer_auth" not in response.headers.get("Set-Cookie", "")
    assert "issuer_mfa=" in ",".join(response.headers.getlist("Set-Cookie"))


async def test_the_provider_refusing_or_being_down_shows_the_login_page(
    app: Quart, browser: BrowserClient, providers: ProviderStubs
) -> None:
    query = await start(browser, "github")
    cancelled = await browser.get(
        f"/login/github/callback?error=access_denied&state={query['state']}"
    )
    assert cancelled.status_code == 401
    assert "GitHub did not sign you in (access_denied)." in await cancelled.get_data(as_text=True)
    query = await start(browser, "github")
    providers.hold()
    response = await browser.get(f"/login/github/callback?code=abc&state={query['state']}")
    providers.release()
    assert response.status_code == 503
    assert "GitHub cannot be reached right now" in await response.get_data(as_text=True)
    assert (await browser.get("/login/nobody")).status_code == 404
