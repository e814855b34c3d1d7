"""Replays of missed entity events and how far each one reached (``issuer:replayed``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart import Quart

from issuer.realtime.hub import Hub
from issuer.services import services_of
from tests.accounts.conftest import PASSWORD


def parsed(frames: list[str]) -> list[tuple[str, Any]]:
    messages = [json.loads(f) for f in frames]
    return [(m["event"], json.loads(m["data"])) for m in messages]


async def test_a_replay_cut_short_says_where_the_next_one_starts(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    account = {"email": "ada@example.test", "password": PASSWORD}
    assert (await client.post("/register", json=account)).status_code == 200
    for _ in range(3):  # three sessions opened: three events on the session channel
        login = await client.post("/login", json=account)
        assert login.status_code == 200
    entity = (await login.get_json())["user"]["entity_id"]
    hub: Hub = services_of(app).hub
    monkeypatch.setattr(hub, "replay_max", 2)
    connection = hub.connect()
    channel = f"private-session-{entity}"
    await hub.subscribe(
        connection, channel, hub.app.channel_auth(connection.socket_id, channel), None
    )

    first = parsed(await hub.replay(connection, channel, 0))
    numbers = [body["id"] for event, body in first if event == "create"]
    assert len(numbers) == 2
    assert first[-1] == ("issuer:replayed", {"through": numbers[-1], "more": True})
    rest = parsed(await hub.replay(connection, channel, numbers[-1]))
    last = [body["id"] for event, body in rest if event == "create"]
    assert len(last) == 1 and last[0] > numbers[-1]
    user_seq = last[0]  # the user's latest event: the third login's
    assert rest[-1] == ("issuer:replayed", {"through": user_seq, "more": False})
    # Nothing missed: an empty replay that still says how far it reached.
    assert parsed(await hub.replay(connection, channel, user_seq)) == [
        ("issuer:replayed", {"through": user_seq, "more": False})
    ]
    await hub.disconnect(connection)
