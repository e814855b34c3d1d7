"""SECURITY.md "Tokens and sessions" 7.x / 10.4.x: revocation, rotation, listing and ending."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from quart import Quart
from sqlalchemy import update

from issuer.accounts.models import LoginSession
from issuer.clock import ManualClock
from issuer.db import utcnow
from issuer.services import services_of
from tests.accounts.conftest import (
    PASSWORD,
    assert_error,
    bearer,
    claims_of,
    login,
    register_and_login,
    running,
    sql,
)

REVOKED = "Token blacklisted. Please log in again."


async def works(client: Any, token: str) -> bool:
    response = await client.get("/auth/status", headers=bearer(token))
    assert response.status_code in (200, 401), await response.get_data(as_text=True)
    return bool(response.status_code == 200)


async def refresh(client: Any, token: str) -> Any:
    return await client.post("/token/refresh", json={"refresh_token": token})


async def set_session(app: Quart, sid: str, **values: Any) -> None:
    async with services_of(app).db.transaction() as session:
        await session.execute(update(LoginSession).where(LoginSession.id == sid).values(**values))


async def test_logout_revokes_access_and_refresh_tokens(client: Any) -> None:
    first = await register_and_login(client)
    second = await (await login(client)).get_json()
    response = await client.post("/logout", headers=bearer(first["token"]))
    assert response.status_code == 200
    await assert_error(
        await client.get("/auth/status", headers=bearer(first["token"])), 401, REVOKED
    )
    await assert_error(await refresh(client, first["refresh_token"]), 401, REVOKED)
    response = await client.post(
        "/generate_array", json={"sentence": "x"}, headers=bearer(first["token"])
    )
    await assert_error(response, 401, REVOKED)
    assert await works(client, second["token"])  # only that login ended


async def test_every_login_is_a_new_session(client: Any) -> None:
    first = await register_and_login(client)
    second = await (await login(client)).get_json()
    a, b = claims_of(first["token"]), claims_of(second["token"])
    assert a["sid"] != b["sid"] and a["jti"] != b["jti"] and a["sub"] == b["sub"]
    response = await client.get("/sessions", headers=bearer(second["token"]))
    assert response.status_code == 200
    sessions = (await response.get_json())["sessions"]
    assert {s["id"] for s in sessions} == {a["sid"], b["sid"]}
    current = {s["id"]: s["current"] for s in sessions}
    assert current == {a["sid"]: False, b["sid"]: True}
    assert all(s["kind"] == "api" for s in sessions)
    await assert_error(await client.get("/sessions"), 401, "Token is missing")


async def test_end_own_session_but_not_someone_elses(client: Any) -> None:
    mine = await register_and_login(client)
    other_tab = await (await login(client)).get_json()
    theirs = await register_and_login(client, "mallory")
    their_sid = claims_of(theirs["token"])["sid"]
    # Someone else's session: 404, and it keeps working.
    response = await client.delete(f"/sessions/{their_sid}", headers=bearer(mine["token"]))
    await assert_error(response, 404)
    assert await works(client, theirs["token"])
    await assert_error(
        await client.delete("/sessions/does-not-exist", headers=bearer(mine["token"])), 404
    )
    # My other session: ended; its tokens stop working, mine keep working.
    other_sid = claims_of(other_tab["token"])["sid"]
    response = await client.delete(f"/sessions/{other_sid}", headers=bearer(mine["token"]))
    assert response.status_code == 200 and (await response.get_json())["success"] is True
    await assert_error(await client.get("/auth/status", headers=bearer(other_tab["token"])), 401)
    await assert_error(await refresh(client, other_tab["refresh_token"]), 401)
    assert await works(client, mine["token"])
    listed = await (await client.get("/sessions", headers=bearer(mine["token"]))).get_json()
    assert [s["id"] for s in listed["sessions"]] == [claims_of(mine["token"])["sid"]]
    # Ending it twice: it is gone.
    response = await client.delete(f"/sessions/{other_sid}", headers=bearer(mine["token"]))
    await assert_error(response, 404)


async def test_deactivated_user_is_refused(app: Quart, client: Any) -> None:
    body = await register_and_login(client)
    await sql(app, "UPDATE users SET active = false WHERE username = 'alice'")
    await assert_error(await client.get("/auth/status", headers=bearer(body["token"])), 401)
    await assert_error(await refresh(client, body["refresh_token"]), 401)
    await assert_error(await login(client), 401, "Authentication failed")
    await sql(app, "UPDATE users SET active = true WHERE username = 'alice'")
    assert (await login(client)).status_code == 200


async def test_revocation_survives_a_restart(overrides: dict[str, Any]) -> None:
    async with running(overrides, clean=False) as first:
        client = first.test_client()
        ended = await register_and_login(client)
        kept = await (await login(client)).get_json()
        assert (await client.post("/logout", headers=bearer(ended["token"]))).status_code == 200
    # A new process on the same database (another worker, or after a restart).
    async with running(overrides) as second:
        client = second.test_client()
        await assert_error(
            await client.get("/auth/status", headers=bearer(ended["token"])), 401, REVOKED
        )
        await assert_error(await refresh(client, ended["refresh_token"]), 401, REVOKED)
        assert await works(client, kept["token"])


async def test_refresh_rotates(client: Any) -> None:
    body = await register_and_login(client)
    response = await refresh(client, body["refresh_token"])
    assert response.status_code == 200
    rotated = await response.get_json()
    assert rotated["success"] is True and rotated["expires_in"] == 1800
    assert rotated["token"] == rotated["access_token"]
    assert rotated["refresh_token"] != body["refresh_token"]
    assert claims_of(rotated["token"])["sid"] == claims_of(body["token"])["sid"]
    assert await works(client, rotated["token"])
    again = await refresh(client, rotated["refresh_token"])
    assert again.status_code == 200


async def test_replay_after_the_grace_window_revokes_the_login(overrides: dict[str, Any]) -> None:
    clock = ManualClock()
    async with running(overrides, refresh_grace=10, clock=clock) as app:
        client = app.test_client()
        body = await register_and_login(client)
        rotated = await (await refresh(client, body["refresh_token"])).get_json()
        clock.advance(9)  # within the grace window: the previous token gets the current one
        again = await (await refresh(client, body["refresh_token"])).get_json()
        assert (
            claims_of(again["refresh_token"])["jti"] == claims_of(rotated["refresh_token"])["jti"]
        )
        clock.advance(2)
        response = await refresh(client, body["refresh_token"])  # a stolen, used token
        await assert_error(response, 401, REVOKED, "refresh_token_reused")
        # The whole login is gone: the legitimate holder's tokens too.
        await assert_error(await refresh(client, rotated["refresh_token"]), 401, REVOKED)
        for token in (rotated["token"], body["token"]):
            await assert_error(await client.get("/auth/status", headers=bearer(token)), 401)
        # Other logins of the user are untouched; a new login works.
        assert (await login(client)).status_code == 200


async def test_replaying_an_older_token_revokes_even_within_the_grace(client: Any) -> None:
    body = await register_and_login(client)
    r1 = (await (await refresh(client, body["refresh_token"])).get_json())["refresh_token"]
    r2 = (await (await refresh(client, r1)).get_json())["refresh_token"]
    assert r2
    # The token two rotations ago is not "the immediately previous one".
    await assert_error(await refresh(client, body["refresh_token"]), 401, REVOKED)
    await assert_error(await refresh(client, r2), 401, REVOKED)


async def test_two_tabs_refreshing_at_once_stay_logged_in(client: Any) -> None:
    body = await register_and_login(client)
    first, second = await asyncio.gather(
        refresh(client, body["refresh_token"]), refresh(client, body["refresh_token"])
    )
    assert first.status_code == 200, await first.get_data(as_text=True)
    assert second.status_code == 200, await second.get_data(as_text=True)
    tabs = [await first.get_json(), await second.get_json()]
    for tab in tabs:
        assert await works(client, tab["token"])
    # Each tab keeps refreshing with what it was given, in either order: still logged in.
    for tab in (tabs[1], tabs[0]):
        response = await refresh(client, tab["refresh_token"])
        assert response.status_code == 200, await response.get_data(as_text=True)
        tab.update(await response.get_json())
    for tab in tabs:
        assert await works(client, tab["token"])


async def test_idle_and_absolute_session_expiry(app: Quart, client: Any) -> None:
    body = await register_and_login(client)
    sid = claims_of(body["token"])["sid"]
    idle = services_of(app).settings.session_idle_timeout
    await set_session(app, sid, last_seen_at=utcnow() - timedelta(seconds=idle + 1))
    await assert_error(await client.get("/auth/status", headers=bearer(body["token"])), 401)
    await assert_error(await refresh(client, body["refresh_token"]), 401)

    other = await (await login(client)).get_json()
    sid = claims_of(other["token"])["sid"]
    await set_session(app, sid, expires_at=utcnow() - timedelta(seconds=1))
    await assert_error(await client.get("/auth/status", headers=bearer(other["token"])), 401)
    await assert_error(await refresh(client, other["refresh_token"]), 401)


async def test_refresh_bad_bodies(client: Any) -> None:
    await assert_error(await refresh(client, "garbage"), 401, "Invalid token")
    await assert_error(await client.post("/token/refresh", json={"token": "x"}), 422)
    await assert_error(await client.post("/token/refresh", json={"refresh_token": 5}), 422)
    await assert_error(
        await client.post("/token/refresh", data="x", headers={"Content-Type": "text/plain"}),
        400,
        "Please use 'application/json'",
    )


async def test_a_logout_during_a_password_change_never_deadlocks(app: Quart, client: Any) -> None:
    """Both lock the user's row and a session row (the entity events number per user): they
    take them in the same order, so running them at once never ends in a deadlock (500)."""
    await client.post("/register", json={"username": "racer", "password": PASSWORD})
    for round_ in range(2):  # (the login rate limit allows 5 per account and minute)
        password = PASSWORD if round_ % 2 == 0 else PASSWORD + "!"
        first = await (
            await client.post("/login", json={"username": "racer", "password": password})
        ).get_json()
        other = await (
            await client.post("/login", json={"username": "racer", "password": password})
        ).get_json()
        new = PASSWORD + "!" if round_ % 2 == 0 else PASSWORD
        change, logout = await asyncio.gather(
            client.post(
                "/update_password",
                json={"existing_password": password, "new_password": new},
                headers={"Authorization": f"Bearer {first['token']}"},
            ),
            client.post("/logout", headers={"Authorization": f"Bearer {other['token']}"}),
        )
        assert change.status_code == 200, await change.get_data(as_text=True)
        assert logout.status_code in (200, 401), await logout.get_data(as_text=True)
