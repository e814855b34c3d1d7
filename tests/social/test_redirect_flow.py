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


async def start(browser: BrowserClient, name: str) -> dict[str, str]:
    """``GET /login/<name>``: the query of the provider's authorization URL it redirects to."""
    response = await browser.get(f"/login/{name}")
    assert response.status_code == 302, await response.get_data(as_text=True)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


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
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    login = await browser.post(
        "/login", form={"username": "ada", "password": PASSWORD, "csrf_token": csrf}
    )
    assert login.status_code == 303
    dashboard = await (await browser.get("/dashboard")).get_data(as_text=True)
    assert 'href="/login/github"' in dashboard and "Link GitHub" in dashboard
    providers.github_authorize_as = ADA
    query = await start(browser, "github")
    response = await browser.get(
        await at_provider(query, f"{providers.base}/github/login/oauth/authorize")
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard#login-methods"
    rows = await sql(app, "SELECT u.username FROM identities i JOIN users u ON u.id = i.user_id")
    assert rows == [("ada",)]
    dashboard = await (await browser.get("/dashboard")).get_data(as_text=True)
    assert "Link GitHub" not in dashboard and "GitHub · Ada Lovelace" in dashboard


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
