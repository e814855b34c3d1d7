"""Passkeys over the API, on SQLite and PostgreSQL, with a software authenticator that signs
what a browser's would: registration, the second factor of an MFA login, the passwordless
login, and what must be refused (another origin, a spent or foreign ceremony, a replayed or
cloned authenticator, someone else's passkey)."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart

from issuer.services import services_of
from issuer.social.service import signup_method_id
from tests.accounts.conftest import BrowserClient, assert_error, bearer, sql
from tests.mfa.conftest import EMAIL, account, challenge, enrol, first_step
from tests.support.authenticator import SoftAuthenticator, b64url

REFUSED = "The passkey could not be verified."


def authenticator(app: Quart, **kwargs: Any) -> SoftAuthenticator:
    passkeys = services_of(app).passkeys
    return SoftAuthenticator(origin=passkeys.origins[0], rp_id=passkeys.rp_id, **kwargs)


async def options(client: Any, path: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.post(path, **kwargs)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()  # type: ignore[no-any-return]


async def register_passkey(
    client: Any, token: str, device: SoftAuthenticator, name: str = "Laptop"
) -> dict[str, Any]:
    found = await options(client, "/passkeys/options", headers=bearer(token))
    created = found["options"]
    assert created["rp"]["id"] == device.rp_id and created["challenge"]
    response = await client.post(
        "/passkeys",
        json={"ceremony": found["ceremony"], "credential": device.register(created), "name": name},
        headers=bearer(token),
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["passkey"]  # type: ignore[no-any-return]


async def second_factor(client: Any, token: str, device: SoftAuthenticator, **kw: Any) -> Any:
    found = await options(client, "/login_mfa/passkey/options", json={"mfa_token": token})
    assertion = device.assert_(found["options"], **kw)
    body = {"ceremony": found["ceremony"], "credential": assertion, "mfa_token": token}
    return await client.post("/login_mfa/passkey", json=body)


async def test_a_passkey_is_registered_listed_and_a_second_factor(app: Quart, client: Any) -> None:
    login = await account(client)
    await enrol(client, login["token"])
    device = authenticator(app)
    created = await register_passkey(client, login["token"], device)
    assert created["name"] == "Laptop" and created["last_used_at"] is None
    listed = await (await client.get("/passkeys", headers=bearer(login["token"]))).get_json()
    assert [p["id"] for p in listed["passkeys"]] == [created["id"]]
    # The login's first step says a passkey can answer it, and the options name ours only.
    first = await (await first_step(client)).get_json()
    assert first["mfa_methods"] == ["totp", "recovery_code", "passkey"]
    found = await options(
        client, "/login_mfa/passkey/options", json={"mfa_token": first["mfa_token"]}
    )
    allowed = [c["id"] for c in found["options"]["allowCredentials"]]
    assert allowed == [b64url(device.credential_id)]
    # The second factor: 004's answer with the tokens; the counter and last use are stored.
    assertion = device.assert_(found["options"])
    body = {"ceremony": found["ceremony"], "credential": assertion, "mfa_token": first["mfa_token"]}
    done = await client.post("/login_mfa/passkey", json=body)
    assert done.status_code == 200, await done.get_data(as_text=True)
    answer = await done.get_json()
    assert answer["message"] == "The passkey is valid" and answer["user"]["access_token"]
    assert (
        await client.get("/auth/status", headers=bearer(answer["user"]["access_token"]))
    ).status_code == 200
    rows = await sql(app, "SELECT sign_count, last_used_at FROM passkeys")
    assert rows[0][0] == device.sign_count == 1 and rows[0][1] is not None
    # The same assertion again: the ceremony and the challenge are spent.
    await assert_error(await client.post("/login_mfa/passkey", json=body), 401)


async def test_what_a_second_factor_passkey_refuses(app: Quart, client: Any) -> None:
    login = await account(client)
    await enrol(client, login["token"])
    device = authenticator(app)
    await register_passkey(client, login["token"], device)
    # A phishing page's origin.
    await assert_error(
        await second_factor(client, await challenge(client), device, origin="https://evil.example"),
        401,
        REFUSED,
    )
    # A cloned authenticator: its counter went backwards.
    clone = authenticator(app, credential_id=device.credential_id, key=device.key)
    clone.user_handle = device.user_handle
    assert (await second_factor(client, await challenge(client), device)).status_code == 200
    await assert_error(await second_factor(client, await challenge(client), clone), 401, REFUSED)
    # Another account's passkey does not answer this account's challenge.
    other = await account(client, "grace@example.com")
    foreign = authenticator(app)
    await register_passkey(client, other["token"], foreign)
    await assert_error(await second_factor(client, await challenge(client), foreign), 401, REFUSED)
    # Options for a challenge need the challenge (in the body, or the cookie of the first step).
    fresh = app.test_client()
    await assert_error(await fresh.post("/login_mfa/passkey/options", json={}), 401)


async def test_a_ceremony_works_once_and_only_for_its_session(app: Quart, client: Any) -> None:
    login = await account(client)
    device = authenticator(app)
    found = await options(client, "/passkeys/options", headers=bearer(login["token"]))
    credential = device.register(found["options"])
    # Another login session of the same account cannot finish this ceremony.
    again = await (await first_step(client)).get_json()
    body = {"ceremony": found["ceremony"], "credential": credential}
    await assert_error(
        await client.post("/passkeys", json=body, headers=bearer(again["token"])), 400, REFUSED
    )
    ok = await client.post("/passkeys", json=body, headers=bearer(login["token"]))
    assert ok.status_code == 201
    await assert_error(
        await client.post("/passkeys", json=body, headers=bearer(login["token"])), 400, REFUSED
    )
    # The same authenticator once more, through a new ceremony: already registered.
    found = await options(client, "/passkeys/options", headers=bearer(login["token"]))
    assert [c["id"] for c in found["options"]["excludeCredentials"]] == [
        b64url(device.credential_id)
    ]
    body = {"ceremony": found["ceremony"], "credential": device.register(found["options"])}
    await assert_error(
        await client.post("/passkeys", json=body, headers=bearer(login["token"])),
        400,
        code="passkey_exists",
    )
    # A registration from another origin.
    found = await options(client, "/passkeys/options", headers=bearer(login["token"]))
    phished = authenticator(app)
    phished.origin = "https://evil.example"
    body = {"ceremony": found["ceremony"], "credential": phished.register(found["options"])}
    await assert_error(
        await client.post("/passkeys", json=body, headers=bearer(login["token"])), 400, REFUSED
    )


async def test_a_passwordless_login_opens_a_browser_session(app: Quart, client: Any) -> None:
    login = await account(client)
    await enrol(client, login["token"])  # MFA on: a verified passkey proves both factors
    device = authenticator(app)
    await register_passkey(client, login["token"], device)
    browser = BrowserClient(app)
    found = await options(browser, "/login/passkey/options")
    assert found["options"]["allowCredentials"] == []
    assert found["options"]["userVerification"] == "required"
    body = {"ceremony": found["ceremony"], "credential": device.assert_(found["options"])}
    # Another browser cannot use this browser's ceremony.
    await assert_error(await BrowserClient(app).post("/login/passkey", json=body), 401, REFUSED)
    found = await options(browser, "/login/passkey/options")
    body = {"ceremony": found["ceremony"], "credential": device.assert_(found["options"])}
    done = await browser.post("/login/passkey", json=body)
    assert done.status_code == 200, await done.get_data(as_text=True)
    answer = await done.get_json()
    assert answer["next"] == "/dashboard" and answer["user"]["email"] == EMAIL
    assert answer["user"]["access_token"] is None and answer["refresh_token"] is None
    assert (await browser.get("/dashboard")).status_code == 200
    # Without user verification (no PIN or biometric), a passkey is one factor: refused.
    lazy = authenticator(app, verifies_user=False)
    await register_passkey(client, login["token"], lazy, name="Key")
    found = await options(browser, "/login/passkey/options")
    body = {"ceremony": found["ceremony"], "credential": lazy.assert_(found["options"])}
    await assert_error(await browser.post("/login/passkey", json=body), 401, REFUSED)


async def test_removing_a_passkey(app: Quart, client: Any) -> None:
    login = await account(client)
    device = authenticator(app)
    created = await register_passkey(client, login["token"], device)
    other = await account(client, "grace@example.com")
    # Someone else's passkey, or no such passkey: 404.
    for who, key in (
        (other["token"], created["id"]),
        (login["token"], "0" * 32),
        (login["token"], "x"),
    ):
        await assert_error(await client.delete(f"/passkeys/{key}", headers=bearer(who)), 404)
    response = await client.delete(f"/passkeys/{created['id']}", headers=bearer(login["token"]))
    assert response.status_code == 200
    listed = await (await client.get("/passkeys", headers=bearer(login["token"]))).get_json()
    assert listed["passkeys"] == []
    browser = BrowserClient(app)
    found = await options(browser, "/login/passkey/options")
    body = {"ceremony": found["ceremony"], "credential": device.assert_(found["options"])}
    await assert_error(await browser.post("/login/passkey", json=body), 401, REFUSED)
    topics = [
        r[0]
        for r in await sql(app, "SELECT topic FROM outbox WHERE topic LIKE 'passkey.%' ORDER BY id")
    ]
    assert topics == ["passkey.created", "passkey.deleted"]


async def login_methods(app: Quart) -> tuple[bool, int, int]:
    """The one account's ways to log in: (a password?, passkeys, identity providers)."""
    ((password,),) = await sql(app, "SELECT password_hash IS NOT NULL FROM users")
    ((passkeys,),) = await sql(app, "SELECT count(*) FROM passkeys")
    ((identities,),) = await sql(app, "SELECT count(*) FROM identities")
    return bool(password), passkeys, identities


async def password_and_passkey(app: Quart, client: Any) -> tuple[dict[str, str], str, str]:
    """An account with a password and one passkey: its auth header, the password method's id
    and the passkey's id."""
    login = await account(client)
    created = await register_passkey(client, login["token"], authenticator(app))
    user = (await services_of(app).sessions.resolve_token(login["token"])).user
    return bearer(login["token"]), signup_method_id(user).hex, created["id"]


async def test_the_last_passkey_cannot_be_deleted_when_it_is_the_only_way_in(
    app: Quart, client: Any
) -> None:
    auth, password, passkey = await password_and_passkey(app, client)
    assert (await client.delete(f"/social/{password}", headers=auth)).status_code == 200
    response = await client.delete(f"/passkeys/{passkey}", headers=auth)
    await assert_error(response, 400, code="last_login_method")
    assert await login_methods(app) == (False, 1, 0)


async def test_removing_the_password_and_the_passkey_at_once_keeps_one(
    app: Quart, client: Any
) -> None:
    auth, password, passkey = await password_and_passkey(app, client)
    answers = await asyncio.gather(
        client.delete(f"/social/{password}", headers=auth),
        client.delete(f"/passkeys/{passkey}", headers=auth),
    )
    assert sorted(a.status_code for a in answers) == [200, 400]
    has_password, passkeys, identities = await login_methods(app)
    assert has_password or passkeys or identities
