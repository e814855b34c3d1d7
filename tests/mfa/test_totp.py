"""TOTP MFA as 004's clients use it, on SQLite and PostgreSQL: enrolment from the QR image,
the two-step login, replays, drift, the challenge's limits, and the rules of SECURITY.md."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Quart

from issuer.clock import ManualClock
from tests.accounts.conftest import assert_error, bearer, from_ip, one_time_link, running, sql
from tests.mfa.conftest import EMAIL, account, challenge, code, enrol, first_step

INVALID_OTP = "You have supplied an invalid MFA token!"


async def login_mfa(client: Any, token: str | None, otp: Any, email: str = EMAIL, **kw: Any) -> Any:
    body: dict[str, Any] = {"email": email, "otp": otp}
    if token is not None:
        body["mfa_token"] = token
    return await client.post("/login_mfa", json=body, **kw)


async def test_enrolment_and_the_two_step_login(app: Quart, client: Any) -> None:
    login = await account(client)
    secret, codes = await enrol(client, login["token"])
    assert len(codes) == 5 and all(len(c) == 32 and c == c.upper() for c in codes)
    assert all(int(c, 16) >= 0 for c in codes)
    # 004's first step for an MFA account: no token, the challenge instead.
    response = await first_step(client)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["success"] is True and "token" not in body and "access_token" not in body
    assert body["user"] == {"mfa_enabled": True, "email": EMAIL, "verified": False}
    assert body["mfa_token"] and body["mfa_expires_in"] > datetime.now(UTC).timestamp()
    # The second step: 004's body with the tokens.
    done = await login_mfa(
        client, body["mfa_token"], code(secret, datetime.now(UTC) + timedelta(seconds=30))
    )
    assert done.status_code == 200, await done.get_data(as_text=True)
    answer = await done.get_json()
    assert answer["message"] == "The TOTP MFA token is valid" and answer["success"] is True
    user = answer["user"]
    assert user["mfa_enabled"] is True and user["access_token"] and answer["refresh_token"]
    status = await client.get("/auth/status", headers=bearer(user["access_token"]))
    assert status.status_code == 200
    # The challenge is spent.
    await assert_error(
        await login_mfa(client, body["mfa_token"], code(secret)), 401, code="mfa_challenge_invalid"
    )


async def test_a_step_works_once_and_drift_is_one_step(overrides: dict[str, Any]) -> None:
    clock = ManualClock(datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC))
    async with running(overrides, clock=clock) as app:
        client = app.test_client()
        login = await account(client)
        secret, _ = await enrol(client, login["token"], clock.now())
        clock.advance(60)
        now = clock.now()
        ok = await login_mfa(client, await challenge(client), code(secret, now))
        assert ok.status_code == 200
        # The same step again (a replayed code) is refused, and so is an older one.
        for when in (now, now - timedelta(seconds=30)):
            await assert_error(
                await login_mfa(client, await challenge(client), code(secret, when)),
                401,
                INVALID_OTP,
            )
        # One step of drift either way is accepted; two are not.
        clock.advance(120)
        now = clock.now()
        for offset, accepted in ((-60, False), (60, False), (-30, True), (30, True)):
            response = await login_mfa(
                client, await challenge(client), code(secret, now + timedelta(seconds=offset))
            )
            assert (response.status_code == 200) is accepted, (offset, response.status_code)


async def test_the_challenge_is_needed_and_bound_to_its_account(app: Quart, client: Any) -> None:
    secret, _ = await enrol(client, (await account(client))["token"])
    other = await account(client, "bob@example.com")
    # An email and a (right) code alone never log anyone in.
    await assert_error(
        await login_mfa(client, None, code(secret)), 401, code="mfa_challenge_invalid"
    )
    # Another account's challenge does not go with this email.
    assert other  # bob has no MFA: his login gives tokens, not a challenge
    token = await challenge(client)
    await assert_error(await login_mfa(client, token, code(secret), "bob@example.com"), 401)
    await assert_error(await login_mfa(client, "not.a.token", code(secret)), 401)


async def test_the_challenge_allows_a_few_attempts_then_expires(
    overrides: dict[str, Any],
) -> None:
    clock = ManualClock()
    async with running(overrides, clock=clock, mfa_max_attempts=3) as app:
        client = app.test_client()
        secret, _ = await enrol(client, (await account(client))["token"], clock.now())
        token = await challenge(client)
        for _ in range(3):
            await assert_error(await login_mfa(client, token, "000000"), 401, INVALID_OTP)
        await assert_error(
            await login_mfa(client, token, code(secret, clock.now())),
            401,
            code="mfa_challenge_invalid",
        )
        token = await challenge(client)
        clock.advance(301)  # past the challenge's five minutes
        await assert_error(
            await login_mfa(client, token, code(secret, clock.now())),
            401,
            code="mfa_challenge_invalid",
        )


async def test_a_browser_client_sending_only_004s_body_uses_the_cookie(
    app: Quart, client: Any
) -> None:
    secret, _ = await enrol(client, (await account(client))["token"])
    response = await first_step(client)
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("issuer_mfa=")]
    assert len(cookies) == 2, cookies  # one per second-factor path
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert {c.split("Path=")[1].split(";")[0] for c in cookies} == {
        "/login_mfa",
        "/verify_recovery_code",
    }
    later = code(secret, datetime.now(UTC) + timedelta(seconds=30))  # enrolment used this step
    done = await client.post("/login_mfa", json={"email": EMAIL, "otp": later}, scheme="https")
    assert done.status_code == 200, await done.get_data(as_text=True)


async def test_recovery_codes_work_once_even_sixteen_at_a_time(app: Quart, client: Any) -> None:
    _, codes = await enrol(client, (await account(client))["token"])
    tokens = [await challenge(client) for _ in range(16)]
    responses = await asyncio.gather(
        *(
            client.post(
                "/verify_recovery_code",
                json={"email": EMAIL, "recovery_code": codes[0], "mfa_token": t},
                **from_ip(f"10.1.0.{i}"),
            )
            for i, t in enumerate(tokens)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 15, statuses
    winner = await next(r for r in responses if r.status_code == 200).get_json()
    assert winner["message"] == "The MFA recovery code is valid" and winner["user"]["access_token"]
    listed = await client.get("/recovery_codes", headers=bearer(winner["user"]["access_token"]))
    body = await listed.get_json()
    assert codes[0] not in body["data"] and body["remaining"] == 4


async def test_sixteen_concurrent_logins_with_one_code_succeed_once(
    app: Quart, client: Any
) -> None:
    secret, _ = await enrol(client, (await account(client))["token"])
    later = code(secret, datetime.now(UTC) + timedelta(seconds=30))  # a step not used yet
    tokens = [await challenge(client) for _ in range(16)]
    responses = await asyncio.gather(
        *(login_mfa(client, t, later, **from_ip(f"10.2.0.{i}")) for i, t in enumerate(tokens))
    )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 15


async def test_recovery_codes_listing_regeneration_and_show_once(
    overrides: dict[str, Any],
) -> None:
    async with running(overrides) as app:
        client = app.test_client()
        login = await account(client)
        _, codes = await enrol(client, login["token"])
        auth = bearer(login["token"])
        listed = await (await client.get("/recovery_codes", headers=auth)).get_json()
        assert listed == {"success": True, "data": codes, "remaining": 5}
        fresh = await (await client.post("/recovery_codes", headers=auth)).get_json()
        assert len(fresh["data"]) == 5 and not set(fresh["data"]) & set(codes)
        token = await challenge(client)
        old = {"email": EMAIL, "recovery_code": codes[1], "mfa_token": token}
        await assert_error(
            await client.post("/verify_recovery_code", json=old), 401,
            "You have supplied an invalid recovery code!",
        )  # fmt: skip
    async with running(overrides, recovery_codes_show_once=True) as app:
        client = app.test_client()
        login = await account(client)
        await enrol(client, login["token"])
        listed = await (
            await client.get("/recovery_codes", headers=bearer(login["token"]))
        ).get_json()
        assert listed == {"success": True, "data": None, "remaining": 5}


async def test_disabling_needs_a_code_and_enabling_needs_one_too(app: Quart, client: Any) -> None:
    login = await account(client)
    auth = bearer(login["token"])
    await assert_error(
        await client.post("/setup_mfa", json={"mfa_enabled": True}, headers=auth),
        422,
        "OTP is required.",
    )
    _, codes = await enrol(client, login["token"])
    await assert_error(
        await client.post("/setup_mfa", json={"mfa_enabled": False}, headers=auth),
        422,
        "OTP is required.",
    )
    wrong = await client.post(
        "/setup_mfa", json={"mfa_enabled": False, "otp": "000000"}, headers=auth
    )
    await assert_error(wrong, 400, INVALID_OTP)
    off = await client.post(
        "/setup_mfa", json={"mfa_enabled": False, "recovery_code": codes[0]}, headers=auth
    )
    assert (
        off.status_code == 200 and (await off.get_json())["message"] == "MFA disabled successfully"
    )
    response = await first_step(client)
    assert "access_token" in await response.get_json()  # a plain login again
    assert await sql(app, "SELECT count(*) FROM recovery_codes") == [(0,)]


async def test_qrcode_needs_the_password_of_an_account_that_has_one(
    app: Quart, client: Any
) -> None:
    auth = bearer((await account(client))["token"])
    await assert_error(
        await client.post("/qrcode", json={"login_type": "signup"}, headers=auth),
        400,
        "Password is required.",
    )
    await assert_error(
        await client.post("/qrcode", json={"password": "not it at all"}, headers=auth), 400
    )
    # A social account's claim does not skip the password of an account that has one.
    await assert_error(
        await client.post("/qrcode", json={"login_type": "social"}, headers=auth),
        400,
        code="password_required",
    )


async def test_secrets_and_codes_are_not_stored_in_clear(app: Quart, client: Any) -> None:
    secret, codes = await enrol(client, (await account(client))["token"])
    ((stored,),) = await sql(app, "SELECT secret FROM otp_methods")
    assert secret not in stored and secret.lower() not in stored.lower()
    rows = await sql(app, "SELECT fingerprint, sealed FROM recovery_codes")
    for fingerprint, sealed in rows:
        assert not any(c in fingerprint or c in sealed or c.lower() in sealed for c in codes)


async def test_a_password_reset_or_email_link_does_not_bypass_mfa(app: Quart, client: Any) -> None:
    await enrol(client, (await account(client))["token"])
    await client.post("/forgot_password", json={"email": EMAIL})
    path = await one_time_link(app, client, "reset_password")
    new = "a brand new passphrase"
    assert (await client.post(path, json={"password": new})).status_code == 200
    body = await (await client.post("/login", json={"email": EMAIL, "password": new})).get_json()
    assert "access_token" not in body and body["mfa_token"]
    # The signup's verification link, followed now, does not log in either.
    verified = await client.post(await one_time_link(app, client, "verify_email"))
    answer = await verified.get_json()
    assert verified.status_code == 200 and answer["user"]["access_token"] is None
    assert answer["user"]["verified"] is True and answer["mfa_token"]


async def test_regenerating_recovery_codes_at_once_leaves_one_set(app: Quart, client: Any) -> None:
    """Four regenerations at once (double clicks, two tabs): one set of five codes stays
    valid, the last one shown (on PostgreSQL each DELETE missed the others' new rows: 15–20
    valid codes)."""
    login = await account(client)
    await enrol(client, login["token"])
    auth = bearer(login["token"])
    answers = await asyncio.gather(
        *(client.post("/recovery_codes", headers=auth) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [200] * 4
    shown = [set((await a.get_json())["data"]) for a in answers]
    listed = await (await client.get("/recovery_codes", headers=auth)).get_json()
    assert listed["remaining"] == 5, listed["remaining"]
    assert set(listed["data"]) in shown
