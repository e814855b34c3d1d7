"""Presence membership when one user's sockets come and go at the same time
(``issuer.realtime.hub``), on each database. Each test forces one interleaving by running the
other socket's whole subscribe or disconnect at a chosen step of the first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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


def membership_told(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The member_added / member_removed frames the hub publishes from now on."""
    told: list[str] = []
    publish = hub.broker.publish

    async def noting(topic: str, message: dict[str, Any]) -> None:
        event = json.loads(message["frame"])["event"]
        if event.startswith("pusher_internal:member_"):
            told.append(event.removeprefix("pusher_internal:"))
        await publish(topic, message)

    monkeypatch.setattr(hub.broker, "publish", noting)
    return told


def at_check(
    hub: Hub,
    monkeypatch: pytest.MonkeyPatch,
    number: int,
    other: Callable[[], Awaitable[None]],
) -> list[bool]:
    """Run ``other()`` once, right after the ``number``-th membership check this task makes
    from now; the list it returns says whether it ran."""
    check = hub._is_member
    calls = 0
    ran: list[bool] = []
    this_task = asyncio.current_task()

    async def interleaved(*args: Any) -> bool:
        nonlocal calls
        found = await check(*args)
        if asyncio.current_task() is not this_task:  # the app's own background work
            return found
        calls += 1
        if calls == number and not ran:
            ran.append(True)
            await other()
        return found

    monkeypatch.setattr(hub, "_is_member", interleaved)
    return ran


async def alice_is_present(hub: Hub) -> bool:
    return [user for user, _ in await hub.members(ROOM)] == ["alice"]


@pytest.mark.parametrize(
    ("leaves_after_look", "others_hear"),
    [
        # After the joiner's first look (which saw the old socket), before its row is stored:
        # others hear member_removed, so they must hear member_added after it.
        (1, ["member_removed", "member_added"]),
        # After both looks saw the old socket: it sees the new one as it leaves; the user never
        # left, and nobody hears otherwise.
        (2, []),
    ],
)
async def test_the_old_socket_leaving_while_a_new_one_joins(
    app: Quart, monkeypatch: pytest.MonkeyPatch, leaves_after_look: int, others_hear: list[str]
) -> None:
    """A page reload (or the mass reconnect after a lost ``LISTEN``): the new socket of a user
    subscribes while the old one disconnects."""
    hub = services_of(app).hub
    old, new = hub.connect(), hub.connect()
    await join(hub, old)
    told = membership_told(hub, monkeypatch)
    ran = at_check(hub, monkeypatch, leaves_after_look, lambda: hub.disconnect(old))
    await join(hub, new)
    assert ran == [True]
    assert told == others_hear
    assert await alice_is_present(hub)
    await hub.disconnect(new)


def after_first_store(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, other: Callable[[], Awaitable[None]]
) -> list[bool]:
    """Run ``other()`` once, right after the next transaction this task commits (a
    subscription row stored); the list it returns says whether it ran."""
    transaction = hub.db.transaction
    ran: list[bool] = []
    this_task = asyncio.current_task()

    @asynccontextmanager
    async def then_other(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with transaction(*args, **kwargs) as session:
            yield session
        if not ran and asyncio.current_task() is this_task:  # not the app's background work
            ran.append(True)
            await other()

    monkeypatch.setattr(hub.db, "transaction", then_other)
    return ran


async def test_two_sockets_of_one_user_joining_at_once_announce_the_user(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs opening together: the second joins entirely once the first has stored its row,
    before the first goes on. Each sees the other; one of them must still announce."""
    hub = services_of(app).hub
    first, second = hub.connect(), hub.connect()
    told = membership_told(hub, monkeypatch)
    ran = after_first_store(hub, monkeypatch, lambda: join(hub, second))
    await join(hub, first)
    assert ran == [True]
    assert told == ["member_added"]
    assert await alice_is_present(hub)
    for connection in (first, second):
        await hub.disconnect(connection)
    assert told == ["member_added", "member_removed"]
