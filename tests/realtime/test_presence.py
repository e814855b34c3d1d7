"""Presence membership when one user's sockets come and go at the same time
(``issuer.realtime.hub``), on each database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart import Quart

from issuer.realtime.hub import Connection, Hub
from issuer.services import services_of

ROOM = "presence-lobby"
ALICE = json.dumps({"user_id": "alice", "user_info": {"name": "Alice"}})


async def join(hub: Hub, connection: Connection) -> None:
    auth = hub.app.channel_auth(connection.socket_id, ROOM, ALICE)
    await hub.subscribe(connection, ROOM, auth, ALICE)


async def test_a_socket_joining_while_another_of_the_user_leaves_keeps_the_user_present(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page reload (or the mass reconnect after a lost ``LISTEN``): the new socket subscribes
    while the old one disconnects. Forced here: the old one leaves completely in the middle of
    the new one's subscription, right after its membership check. Other members must not end
    up believing the user is gone."""
    hub = services_of(app).hub
    old, new = hub.connect(), hub.connect()
    await join(hub, old)
    told: list[str] = []
    publish = hub.broker.publish

    async def noting(topic: str, message: dict[str, Any]) -> None:
        told.append(json.loads(message["frame"])["event"])
        await publish(topic, message)

    monkeypatch.setattr(hub.broker, "publish", noting)
    check = hub._is_member
    left: list[bool] = []

    async def old_leaves_after_the_check(*args: Any) -> bool:
        found = await check(*args)
        if not left:
            left.append(True)
            await hub.disconnect(old)
        return found

    monkeypatch.setattr(hub, "_is_member", old_leaves_after_the_check)
    await join(hub, new)
    assert left == [True]
    membership = [e for e in told if e.startswith("pusher_internal:member_")]
    assert membership in ([], ["pusher_internal:member_removed", "pusher_internal:member_added"])
    assert [user for user, _ in await hub.members(ROOM)] == ["alice"]
    await hub.disconnect(new)
