"""Social login over the API, as 004's clients call it, against provider stubs that speak real
HTTP on loopback (``tests.support.identity_providers``), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec as ec_key
from cryptography.hazmat.primitives.asymmetric import rsa
from quart import Quart

from tests.accounts.conftest import PASSWORD, assert_error, bearer, claims_of, running, sql
from tests.mfa.conftest import code, enrol
from tests.social.conftest import counts
from tests.support.identity_providers import (
    FACEBOOK_APP_ID,
    FacebookUser,
    GitHubUser,
    ProviderStubs,
)

ADA = GitHubUser(
    id=583231, login="ada", name="Ada Lovelace",
    emails=[
        {"email": "ada@old.example", "primary": False, "verified": True},
        {"email": "ada@example.test", "primary": True, "verified": True},
    ],
)  # fmt: skip


async def github(client: Any, providers: ProviderStubs, user: GitHubUser = ADA, **kw: Any) -> Any:
    return await client.post("/social/github", json={"code": providers.github_code(user)}, **kw)


async def password_account(client: Any, email: str) -> str:
    """An email and password account, logged in: its access token."""
    response = await client.post("/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    response = await client.post("/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return str((await response.get_json())["access_token"])


def app_overrides(app: Quart) -> dict[str, Any]:
    """The settings ``app`` was built with, for a fresh app on the same database."""
    from issuer.services import services_of

    return services_of(app).settings.model_dump()


async def topics(app: Quart) -> list[str]:
    return [row[0] for row in await sql(app, "SELECT topic FROM outbox ORDER BY id")]


# --- GitHub --------------------------------------------------------------------------------


async def test_github_creates_an_account_then_logs_it_in(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    response = await github(client, providers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["success"] is True
    assert body["auth"]["token_type"] == "bearer" and body["auth"]["access_token"].startswith(
        "gho_"
    )
    user = body["user"]
    # Only the primary, verified email counts; GitHub verified it.
    assert user["email"] == "ada@example.test" and user["verified"] is True
    assert (user["first_name"], user["last_name"]) == ("Ada", "Lovelace")
    assert claims_of(user["access_token"])["sub"] == user["entity_id"]
    assert body["refresh_token"]
    # user.created and login_method.created; no verification email for a verified address.
    assert await topics(app) == ["user.created", "login_method.created", "session.opened"]
    rows = await sql(app, "SELECT password_hash FROM users")
    assert rows == [(None,)]

    again = await github(client, providers)
    assert again.status_code == 200
    assert (await again.get_json())["user"]["entity_id"] == user["entity_id"]
    assert (await counts(app))["users"] == 1 and (await counts(app))["identities"] == 1

    methods = await client.get("/social", headers=bearer(user["access_token"]))
    listed = (await methods.get_json())["login_methods"]
    assert [m["provider"] for m in listed] == ["github"]
    profile = listed[0]["profile"]
    assert profile["email"] == "ada@example.test" and profile["user_name"] == "Ada Lovelace"
    assert profile["access_token"] is None  # provider tokens are never stored or returned


async def test_a_bad_github_code_is_refused_and_nothing_is_written(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    before = await counts(app)
    response = await client.post("/social/github", json={"code": "0123456789abcdef0123"})
    await assert_error(
        response, 401, "The GitHub code is invalid or has expired.", "social_refused"
    )
    assert await counts(app) == before
    # A code works once.
    used = providers.github_code(ADA)
    assert (await client.post("/social/github", json={"code": used})).status_code == 200
    await assert_error(await client.post("/social/github", json={"code": used}), 401)


async def test_a_taken_generated_username_gets_a_suffix(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    register = await client.post("/register", json={"username": "github-42", "password": PASSWORD})
    assert register.status_code == 200
    squatted = GitHubUser(id=42, login="grace", emails=[])
    response = await github(client, providers, squatted)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["user"]["username"].startswith("github-42-")


async def test_simultaneous_first_logins_make_one_account(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    google = providers.oidc["google"]
    answers = await asyncio.gather(
        *(client.post("/social/google", json={"idtoken": google.id_token("ada")}) for _ in range(4))
    )
    bodies = [await a.get_json() for a in answers]
    assert [a.status_code for a in answers] == [200] * 4, bodies
    assert len({b["user"]["entity_id"] for b in bodies}) == 1
    assert (await counts(app))["users"] == 1


async def test_long_provider_values_log_in_again(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    long = GitHubUser(id=9, login="l", name="N" * 400, emails=ADA.emails)
    for _ in range(2):
        response = await github(client, providers, long)
        assert response.status_code == 200, await response.get_data(as_text=True)


async def test_no_secret_reaches_the_log(
    app: Quart, client: Any, providers: ProviderStubs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = providers.facebook_token(FB)
    response = await client.post("/social/facebook", json={"accessToken": token, "userID": FB.id})
    assert response.status_code == 200
    assert (await github(client, providers)).status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert providers.requests and "facebook-app-secret" not in logged and token not in logged
    assert "issuer-client-secret" not in logged and "gho_" not in logged


async def test_github_without_a_verified_primary_email_gets_no_email(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    grace = GitHubUser(
        id=42, login="grace", name=None,
        emails=[{"email": "grace@example.test", "primary": True, "verified": False},
                {"email": "g@example.test", "primary": False, "verified": True}],
    )  # fmt: skip
    response = await github(client, providers, grace)
    assert response.status_code == 200, await response.get_data(as_text=True)
    user = (await response.get_json())["user"]
    assert user["email"] is None and user["verified"] is False
    assert user["username"] == "github-42" and user["first_name"] == "grace"


# --- OpenID Connect: Google's ID token, LinkedIn's and a discovered provider's codes ----------


async def test_a_google_id_token_signs_in_and_is_checked_in_every_way(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    google = providers.oidc["google"]
    response = await client.post("/social/google", json={"idtoken": google.id_token("ada")})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["auth"]["name"] == "google" and body["auth"]["sub"] == "ada"
    assert body["user"]["email"] == "ada@example.test" and body["user"]["verified"] is True
    entity = body["user"]["entity_id"]

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    refused = {
        "forged": google.id_token("ada", key=stranger),
        "expired": google.id_token("ada", exp=now - 3600, iat=now - 7200),
        "wrong audience": google.id_token("ada", aud="someone-else"),
        "wrong issuer": google.id_token("ada", iss="https://evil.example"),
        "another app's azp": google.id_token("ada", aud=["issuer-client", "x"], azp="x"),
        "no exp": google.id_token("ada", drop=("exp",)),
        "HS256 with a public value": jwt.encode(google.claims("ada"), "k" * 32, algorithm="HS256"),
        "not a JWT": "not-a-jwt",
    }
    before = await counts(app)
    for why, token in refused.items():
        answer = await client.post("/social/google", json={"idtoken": token})
        body = await assert_error(answer, 401, code="social_refused")
        assert "Google" in body["message"], (why, body)
    assert (await assert_error(
        await client.post("/social/google", json={"idtoken": refused["wrong audience"]}), 401
    ))["message"] == "The Google ID token was issued to another application."  # fmt: skip
    assert (await assert_error(
        await client.post("/social/google", json={"idtoken": refused["expired"]}), 401
    ))["message"] == "The Google ID token has expired."  # fmt: skip
    assert await counts(app) == before

    again = await client.post("/social/google", json={"idtoken": google.id_token("ada")})
    assert (await again.get_json())["user"]["entity_id"] == entity


async def test_a_header_that_does_not_fit_the_key_is_refused(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    google = providers.oidc["google"]
    assert (
        await client.post("/social/google", json={"idtoken": google.id_token()})
    ).status_code == 200
    kid = google.keys[-1][0]
    ec = ec_key.generate_private_key(ec_key.SECP256R1())
    forged = jwt.encode(google.claims("ada"), ec, algorithm="ES256", headers={"kid": kid})
    await assert_error(await client.post("/social/google", json={"idtoken": forged}), 401)


async def test_a_provider_answering_nonsense_is_unavailable(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    corp = providers.oidc["corp"]
    for document in ({"issuer": None}, [1, 2], {**corp.discovery(), "jwks_uri": "http://[::1"}):
        corp.discovery_override = document
        async with running(app_overrides(app)) as fresh:
            answer = await fresh.test_client().post(
                "/social/corp", json={"idtoken": corp.id_token()}
            )
            await assert_error(answer, 503, code="provider_unavailable")
    corp.discovery_override = None
    corp.jwks_override = {"keys": None}
    async with running(app_overrides(app)) as fresh:
        answer = await fresh.test_client().post("/social/corp", json={"idtoken": corp.id_token()})
        await assert_error(answer, 401, code="social_refused")  # no usable key: not vouched for
    corp.jwks_override = None


async def test_a_new_signing_key_is_fetched_once_per_unknown_kid(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    google = providers.oidc["google"]
    assert (
        await client.post("/social/google", json={"idtoken": google.id_token()})
    ).status_code == 200
    fetched = providers.counts["/oidc/google/jwks"]
    google.rotate()  # the provider starts signing with a new key
    response = await client.post("/social/google", json={"idtoken": google.id_token()})
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert providers.counts["/oidc/google/jwks"] == fetched + 1
    # A kid nobody published: refused, and it cannot make us ask the provider again at once.
    for _ in range(3):
        forged = google.id_token(kid="made-up")
        await assert_error(await client.post("/social/google", json={"idtoken": forged}), 401)
    assert providers.counts["/oidc/google/jwks"] == fetched + 1


async def test_linkedin_exchanges_its_code_with_client_secret_post(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    assert (await github(client, providers)).status_code == 200
    linkedin = providers.oidc["linkedin"]
    response = await client.post("/social/linkedin", json={"code": linkedin.grant("lin")})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["auth"]["name"] == "linkedin" and body["auth"]["expires_in"] == 3600
    assert body["user"]["email"] == "lin@example.test"
    github_code = next(form for path, form in providers.requests if path.endswith("access_token"))
    assert "redirect_uri" not in github_code  # GitHub uses the app's registered callback
    sent = next(form for path, form in providers.requests if path == "/oidc/linkedin/token")
    assert sent["client_secret"] == "issuer-client-secret"  # LinkedIn takes client_secret_post
    # 004's clients send only the code: our callback is the redirect URI.
    assert sent["redirect_uri"] == "http://localhost:5000/login/linkedin/callback"
    await assert_error(await client.post("/social/linkedin", json={"code": "used-or-wrong"}), 401)


async def test_a_discovered_provider_takes_a_pkce_code_and_asks_userinfo(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    corp = providers.oidc["corp"]
    corp.include_email_in_id_token = False  # the email comes from the UserInfo endpoint
    verifier = "v" * 50
    from tests.support.identity_providers import s256

    redirect = "https://app.example/callback"
    grant = corp.grant("kim", redirect_uri=redirect, code_challenge=s256(verifier))
    body = {"code": grant, "redirect_uri": redirect, "code_verifier": verifier}
    response = await client.post("/social/corp", json=body)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["user"]["email"] == "kim@example.test"
    assert providers.counts["/oidc/corp/userinfo"] == 1
    # Discovery lists no auth method: client_secret_basic, the default, was used.
    sent = next(form for path, form in providers.requests if path == "/oidc/corp/token")
    assert "client_secret" not in sent
    wrong = corp.grant("kim", redirect_uri=redirect, code_challenge=s256(verifier))
    bad = {"code": wrong, "redirect_uri": redirect, "code_verifier": "w" * 50}
    await assert_error(await client.post("/social/corp", json=bad), 401)


async def test_unconfigured_providers_are_off(overrides: dict[str, Any]) -> None:
    off = {**overrides, "google_client_id": "", "github_client_id": "", "oidc_providers": []}
    async with running(off) as app:
        client = app.test_client()
        off_routes = {
            "/social/google": {"idtoken": "x.y.z"},
            "/social/github": {"code": "c"},
            "/social/corp": {"code": "c"},
            "/social/nobody": {"code": "c"},
        }
        for path, body in off_routes.items():
            await assert_error(await client.post(path, json=body), 404)
        page = await (await client.get("/login")).get_data(as_text=True)
        assert "Log in with LinkedIn" in page and "Log in with Google" not in page
        assert "Log in with GitHub" not in page


# --- Facebook ------------------------------------------------------------------------------


FB = FacebookUser(id="10158", name="Ada L", email="ada@fb.example", first_name="Ada", last_name="L")


async def test_facebook_is_asked_about_the_token(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    token = providers.facebook_token(FB)
    body = {"accessToken": token, "userID": FB.id, "expiresIn": 4279,
            "grantedScopes": "email,public_profile",
            "email": "victim@example.test", "name": "Not Trusted"}  # fmt: skip
    response = await client.post("/social/facebook", json=body)
    assert response.status_code == 200, await response.get_data(as_text=True)
    answer = await response.get_json()
    # Facebook's /me is believed, not the body; its email is not known to be verified, so it
    # stays on the identity and the account gets none (see the takeover test below).
    assert answer["auth"]["email"] == "ada@fb.example" and answer["auth"]["user_name"] == "Ada L"
    assert answer["user"]["email"] is None and answer["user"]["username"] == "facebook-10158"
    assert answer["auth"]["expires_in"] == 4279
    assert await topics(app) == ["user.created", "login_method.created", "session.opened"]
    rows = await sql(app, "SELECT email, email_verified FROM identities")
    assert [tuple(r) for r in rows] == [("ada@fb.example", False)]
    me = next(args for path, args in providers.requests if path == "/facebook/me")
    assert len(me["appsecret_proof"]) == 64


async def test_an_unverified_provider_email_cannot_squat_an_address(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    """Eve sets the victim's address at a provider that does not verify it and logs in first:
    the victim can still sign up, and a password reset of that address reaches only the
    victim's own account — never one that Eve's identity is linked to."""
    eve = FacebookUser(id="666", name="Eve", email="victim@example.test")
    eve_login = await client.post(
        "/social/facebook",
        json={"accessToken": providers.facebook_token(eve), "userID": eve.id},
    )
    assert eve_login.status_code == 200, await eve_login.get_data(as_text=True)
    assert (await eve_login.get_json())["user"]["email"] is None
    token = await password_account(client, "victim@example.test")
    victim = await client.get("/auth/status", headers=bearer(token))
    owner = (await victim.get_json())["data"]["user_id"]
    rows = await sql(app, "SELECT u.entity_id FROM identities i JOIN users u ON u.id = i.user_id")
    assert [str(r[0]).replace("-", "") for r in rows] != [owner]
    # Eve's identity still logs in to Eve's own account, not the victim's.
    again = await client.post(
        "/social/facebook",
        json={"accessToken": providers.facebook_token(eve), "userID": eve.id},
    )
    assert (await again.get_json())["user"]["entity_id"] != owner


async def test_facebook_tokens_facebook_does_not_vouch_for_are_refused(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    cases = {
        "another app": (providers.facebook_token(FB, app_id="999"), FB.id,
                        "The Facebook access token was issued to another application."),
        "another user": (providers.facebook_token(FB), "777",
                         "The Facebook access token belongs to another user."),
        "expired": (providers.facebook_token(FB, expires_at=int(time.time()) - 10), FB.id,
                    "The Facebook access token has expired."),
        "invalid": (providers.facebook_token(FB, valid=False), FB.id,
                    "The Facebook access token is invalid."),
        "unknown": ("EAAmadeup", FB.id, "The Facebook access token is invalid."),
    }  # fmt: skip
    before = await counts(app)
    for why, (token, user_id, message) in cases.items():
        response = await client.post(
            "/social/facebook", json={"accessToken": token, "userID": user_id}
        )
        body = await assert_error(response, 401, code="social_refused")
        assert body["message"] == message, why
    assert await counts(app) == before
    app_tokens = {
        args["access_token"] for path, args in providers.requests if path == "/facebook/debug_token"
    }
    assert app_tokens == {f"{FACEBOOK_APP_ID}|facebook-app-secret"}


# --- linking, the refused auto-link, unlinking ---------------------------------------------


async def test_linking_while_logged_in_then_logging_in_with_the_provider(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    token = await password_account(client, "ada@other.example")
    response = await github(client, providers, headers=bearer(token))
    assert response.status_code == 200, await response.get_data(as_text=True)
    linked = await response.get_json()
    assert linked["user"]["email"] == "ada@other.example" and linked["user"]["access_token"] is None
    methods = (await (await client.get("/social", headers=bearer(token))).get_json())[
        "login_methods"
    ]
    assert sorted(m["provider"] for m in methods) == ["github", "signup"]
    # Now GitHub logs in to that same account.
    login = await github(client, providers)
    assert (await login.get_json())["user"]["entity_id"] == linked["user"]["entity_id"]
    # An identity linked to someone is not linked to anyone else.
    other = await password_account(client, "bob@example.test")
    await assert_error(
        await github(client, providers, headers=bearer(other)), 409, code="identity_taken"
    )


async def test_no_auto_link_to_an_existing_email(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    await password_account(client, "ada@example.test")
    before = await counts(app)
    google = providers.oidc["google"]
    for verified in (False, True):
        token = google.id_token("ada", email="ada@example.test", email_verified=verified)
        response = await client.post("/social/google", json={"idtoken": token})
        body = await assert_error(response, 409, code="account_exists")
        assert "Log in to it, then link your Google account" in body["message"]
    # Even with the existing account's email verified: its owner must log in and link.
    await sql(app, "UPDATE users SET verified = true")
    response = await client.post(
        "/social/google", json={"idtoken": google.id_token("ada", email="ADA@example.test")}
    )
    await assert_error(response, 409, code="account_exists")
    assert await counts(app) == before


async def test_unlinking_never_removes_the_last_way_to_log_in(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    body = await (await github(client, providers)).get_json()
    token = body["user"]["access_token"]
    methods = (await (await client.get("/social", headers=bearer(token))).get_json())[
        "login_methods"
    ]
    only = methods[0]["profile"]["entity_id"]
    response = await client.delete(f"/social/{only}", headers=bearer(token))
    await assert_error(response, 400, code="last_login_method")
    # With Google linked too, GitHub can go; then Google is the last.
    google = providers.oidc["google"].id_token("ada", email="ada2@example.test")
    linked = await client.post("/social/google", json={"idtoken": google}, headers=bearer(token))
    assert linked.status_code == 200, await linked.get_data(as_text=True)
    gone = await client.delete(f"/social/{only}", headers=bearer(token))
    assert (await gone.get_json()) == {"success": True, "message": "Login method is deleted"}
    methods = (await (await client.get("/social", headers=bearer(token))).get_json())[
        "login_methods"
    ]
    assert [m["provider"] for m in methods] == ["google"]
    await assert_error(
        await client.delete(f"/social/{methods[0]['profile']['entity_id']}", headers=bearer(token)),
        400, code="last_login_method",
    )  # fmt: skip
    # Someone else's id (and an unknown one) answer 004's message.
    other = await password_account(client, "bob@example.test")
    foreign = methods[0]["profile"]["entity_id"]
    await assert_error(
        await client.delete(f"/social/{foreign}", headers=bearer(other)), 400,
        f"This user doesn't have login method {foreign}",
    )  # fmt: skip
    assert "login_method.deleted" in await topics(app)


async def test_the_password_is_a_login_method_that_can_go_when_another_remains(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    token = await password_account(client, "ada@other.example")
    assert (await github(client, providers, headers=bearer(token))).status_code == 200
    methods = (await (await client.get("/social", headers=bearer(token))).get_json())[
        "login_methods"
    ]
    signup = next(m for m in methods if m["provider"] == "signup")["profile"]["entity_id"]
    assert (await client.delete(f"/social/{signup}", headers=bearer(token))).status_code == 200
    refused = await client.post("/login", json={"email": "ada@other.example", "password": PASSWORD})
    await assert_error(refused, 401)
    assert (await github(client, providers)).status_code == 200


# --- MFA, failures ------------------------------------------------------------------------


async def test_an_mfa_account_gets_its_challenge_from_a_social_login(
    app: Quart, client: Any, providers: ProviderStubs
) -> None:
    token = await password_account(client, "ada@example.test")
    assert (await github(client, providers, headers=bearer(token))).status_code == 200
    secret, _ = await enrol(client, token)
    response = await github(client, providers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert "access_token" not in body["user"] and body["mfa_token"]
    assert body["user"] == {"mfa_enabled": True, "email": "ada@example.test", "verified": False}
    done = await client.post(
        "/login_mfa",
        # The next step's code (enrolment used this step's; each works once).
        json={
            "email": "ada@example.test",
            "otp": code(secret, datetime.now(UTC) + timedelta(seconds=30)),
            "mfa_token": body["mfa_token"],
        },
    )
    assert done.status_code == 200, await done.get_data(as_text=True)
    assert (await done.get_json())["user"]["access_token"]


async def test_a_provider_down_or_hanging_answers_503_and_writes_nothing(
    overrides: dict[str, Any], providers: ProviderStubs
) -> None:
    from issuer.issuance.agents.local import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    async with running({**overrides, "github_oauth_url": closed, "google_issuer": closed}) as app:
        client = app.test_client()
        before = await counts(app)
        response = await client.post("/social/github", json={"code": "c0de"})
        await assert_error(response, 503, "GitHub cannot be reached right now; please try again.")
        assert response.headers["Retry-After"]
        await assert_error(await client.post("/social/google", json={"idtoken": "a.b.c"}), 401)
        genuine = {"idtoken": providers.oidc["google"].id_token()}
        await assert_error(
            await client.post("/social/google", json=genuine), 503, code="provider_unavailable"
        )
        assert await counts(app) == before
    async with running(overrides) as app:
        client = app.test_client()
        providers.hold()  # every provider answer waits: the 1 s timeout ends the request
        started = time.monotonic()
        response = await client.post("/social/linkedin", json={"code": "c0de"})
        await assert_error(response, 503, code="provider_unavailable")
        assert time.monotonic() - started < 5
        providers.release()


async def test_bad_bodies_get_a_4xx(app: Quart, client: Any, providers: ProviderStubs) -> None:
    await assert_error(
        await client.post("/social/github", json={}), 400, "Please use 'application/json'"
    )
    only_uri = {"redirect_uri": "https://app.example/cb"}
    await assert_error(await client.post("/social/github", json=only_uri), 400, "Code is required.")
    await assert_error(
        await client.post("/social/google", json=only_uri), 400, "An idtoken or a code is required."
    )
    await assert_error(
        await client.post("/social/facebook", json={"userID": "1"}), 400, "accessToken is required."
    )
    await assert_error(
        await client.post("/social/facebook", json={"accessToken": "t", "userID": "x"}), 422
    )
    await assert_error(await client.post("/social/github", json={"code": "has space"}), 422)
    await assert_error(
        await client.post("/social/github", json={"code": "c"}, headers=bearer("nope")), 401
    )


def test_a_configured_provider_cannot_take_a_reserved_name() -> None:
    import pytest
    from pydantic import ValidationError

    from issuer.config import Settings

    for name in ("github", "passkey", "signup", "Bad Name", "x" * 32):
        entry = {"name": name, "issuer": "https://sso.example", "client_id": "c"}
        with pytest.raises(ValidationError):
            Settings(env="test", oidc_providers=[entry])
