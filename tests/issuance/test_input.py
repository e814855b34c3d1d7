"""Bad input to the portal answers 4xx in the one error shape, and nothing reaches the agent,
the credential or the database: wrongly typed webhook ids, control characters in the holder's
details, and timestamps that always carry their UTC offset. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from quart import Quart

from issuer.services import services_of
from tests.accounts.conftest import assert_error, claims_of, forge, register_and_login
from tests.fakes import FakeAgent
from tests.issuance.test_portal import connect, start

HOOK = {"X-API-Key": "hook-key"}
BAD_IDS: list[Any] = [
    {"nested": "object"},
    ["a", "list"],
    123,
    "\ud800",  # a lone surrogate
    "nul\u0000byte",
    "x" * 129,
]


@pytest.mark.parametrize("field", ["connection_id", "invitation_msg_id", "cred_ex_id"])
async def test_webhook_ids_of_the_wrong_type_are_refused(
    app: Quart, client: Any, field: str
) -> None:
    for bad in BAD_IDS:
        body = {"state": "active", "connection_id": "c-1", "cred_ex_id": "x-1", field: bad}
        for topic in ("connections", "issue_credential_v2_0"):
            response = await client.post(
                f"/webhooks/topic/{topic}/",
                data=json.dumps(body),
                headers={**HOOK, "Content-Type": "application/json"},
            )
            detail = await assert_error(response, 422, code="validation_error")
            assert detail["details"][0]["loc"][0] == field, detail


async def test_webhook_bodies_that_are_not_objects_are_refused(client: Any) -> None:
    for raw in (b"[]", b'"text"', b"null", b"{not json", b"\xff\xfe"):
        response = await client.post(
            "/webhooks/topic/connections/",
            data=raw,
            headers={**HOOK, "Content-Type": "application/json"},
        )
        await assert_error(response, 400, "Please use 'application/json'")


async def test_a_genuine_token_with_a_nul_in_its_session_id_is_refused(
    app: Quart, client: Any
) -> None:
    token = (await register_and_login(client))["token"]
    for sid in ("a\u0000b", "\ud800", "x" * 65, ""):
        forged = forge(app, {**claims_of(token), "sid": sid})
        response = await client.get("/auth/status", headers={"Authorization": f"Bearer {forged}"})
        await assert_error(response, 401, "Invalid token", "invalid_token")


@pytest.mark.parametrize(
    "value", ["Ada\u0000", "Ada\nLovelace", "tab\there", "\u007f", "x" * 201, "   "]
)
async def test_control_characters_never_reach_the_credential(
    app: Quart, client: Any, fake_agent: FakeAgent, value: str
) -> None:
    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    form = {"prename": value, "surname": "Lovelace", "institution": "ETH", "csrf_token": csrf}
    response = await client.post("/name", form=form)
    body = await assert_error(response, 422, "Please fill in every field.", "validation_error")
    assert body["details"][0]["loc"] == ["prename"], body
    assert fake_agent.offers == []
    row = await services_of(app).issuance.get(session_id)
    assert row is not None and row.state == "connected" and row.attributes is None


async def test_snapshots_carry_their_utc_offset(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, _ = await start(client)
    await connect(app, fake_agent, session_id)
    snapshot = await (await client.get("/api/issuance/current")).get_json()
    stamp = datetime.fromisoformat(snapshot["updated_at"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0, snapshot
    row = await services_of(app).issuance.get(session_id)
    assert row is not None and row.created_at.tzinfo is not None
