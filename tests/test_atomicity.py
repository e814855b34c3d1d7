"""One use case, one transaction: when a later step fails, nothing of the earlier ones stays.

Each test lets the first steps of a use case run, makes the next one fail, and checks the
database holds no trace of the attempt. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

from issuer.accounts import queries as account_queries
from issuer.accounts.emails import AccountEmails
from issuer.accounts.sessions import LoginSessions
from issuer.issuance.agents.base import ExchangeState, ExchangeStatus
from issuer.outbox.service import Outbox
from issuer.services import services_of
from tests.accounts.conftest import (
    PASSWORD,
    bearer,
    login,
    one_time_link,
    register_and_login,
    sql,
)
from tests.fakes import FakeAgent

NEW_PASSWORD = "another long passphrase"


class Boom(RuntimeError):
    pass


def fail(*_args: Any, **_kwargs: Any) -> Any:
    raise Boom("the next step fails")


async def count(app: Quart, table: str, where: str = "1=1", **params: Any) -> int:
    rows = await sql(app, f"SELECT count(*) FROM {table} WHERE {where}", **params)
    return int(rows[0][0])


async def test_login_records_nothing_when_the_session_cannot_be_opened(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register_and_login(client)
    before = await sql(app, "SELECT last_login_at, password_hash FROM users")
    sessions = await count(app, "login_sessions")
    monkeypatch.setattr(LoginSessions, "open", fail)
    assert (await login(client)).status_code == 500
    assert await sql(app, "SELECT last_login_at, password_hash FROM users") == before
    assert await count(app, "login_sessions") == sessions


async def change_password(client: Any, token: str) -> Any:
    return await client.post(
        "/update_password",
        json={"existing_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(token),
    )


async def test_password_change_keeps_the_old_state_when_the_notice_cannot_be_written(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await register_and_login(client)
    other = await (await login(client)).get_json()
    outbox_rows = await count(app, "outbox")
    monkeypatch.setattr(AccountEmails, "password_changed", fail)
    assert (await change_password(client, first["token"])).status_code == 500
    # The hash, the other sessions and the outbox are as they were.
    assert await count(app, "outbox") == outbox_rows
    assert (await login(client)).status_code == 200
    assert (await login(client, password=NEW_PASSWORD)).status_code == 401
    status = await client.get("/auth/status", headers=bearer(other["token"]))
    assert status.status_code == 200


async def test_password_change_keeps_the_old_hash_when_sessions_cannot_be_ended(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await register_and_login(client)
    monkeypatch.setattr(account_queries, "revoke_user_sessions", fail)
    assert (await change_password(client, first["token"])).status_code == 500
    assert (await login(client)).status_code == 200


async def test_reset_changes_nothing_when_its_notice_cannot_be_written(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.post("/signup", json={"email": "ada@example.com", "password": PASSWORD})
    body = await (
        await client.post("/login", json={"email": "ada@example.com", "password": PASSWORD})
    ).get_json()
    await client.post("/forgot_password", json={"email": "ada@example.com"})
    path = await one_time_link(app, client, "reset_password")
    monkeypatch.setattr(AccountEmails, "password_changed", fail)
    assert (await client.post(path, json={"password": NEW_PASSWORD})).status_code == 500
    monkeypatch.undo()
    # The token was not spent, the sessions live, the password is the old one.
    status = await client.get("/auth/status", headers=bearer(body["token"]))
    assert status.status_code == 200
    assert (await client.post(path, json={"password": NEW_PASSWORD})).status_code == 200


async def test_verification_changes_nothing_when_the_login_cannot_be_opened(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.post("/signup", json={"email": "bob@example.com", "password": PASSWORD})
    path = await one_time_link(app, client, "verify_email")
    events = await count(app, "outbox", "topic = 'user.verified'")
    monkeypatch.setattr(LoginSessions, "open", fail)
    assert (await client.post(path)).status_code == 500
    monkeypatch.undo()
    assert await count(app, "users", "verified = :v", v=True) == 0
    assert await count(app, "outbox", "topic = 'user.verified'") == events
    assert (await client.post(path)).status_code == 200  # the link still works, once


async def test_registration_writes_nothing_when_its_event_cannot_be_written(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Outbox, "event", fail)
    response = await client.post("/register", json={"username": "carol", "password": PASSWORD})
    assert response.status_code == 500
    assert await count(app, "users") == 0 and await count(app, "outbox") == 0


async def test_accepted_credential_keeps_its_state_when_the_event_cannot_be_written(
    app: Quart, client: Any, fake_agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.issuance.test_portal import connect, start

    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    form = {"prename": "A", "surname": "B", "institution": "C", "csrf_token": csrf}
    assert (await client.post("/name", form=form)).status_code == 200
    service = services_of(app).issuance
    row = await service.get(session_id)
    assert row is not None and row.exchange_id
    fake_agent.exchanges[row.exchange_id] = ExchangeState(ExchangeStatus.ACCEPTED)
    monkeypatch.setattr(Outbox, "event", fail)
    with pytest.raises(Boom):
        await service.reconcile(row)
    after = await service.get(session_id)
    assert after is not None and after.state == "offered" and after.version == row.version
    assert await count(app, "outbox", "topic = 'credential.accepted'") == 0
