"""The real ``pusher-js`` (npm, under Node) against the app: private entity channels through
``/pusher/auth`` with an access token, refusals, presence, client events, and the replay of
missed events after a reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.accounts.conftest import PASSWORD
from tests.realtime.conftest import Served
from tests.support.pusher_js import PusherJs, SubscriptionRefused


@asynccontextmanager
async def pusher_js(served: Served, token: str) -> AsyncIterator[PusherJs]:
    async with PusherJs(
        host="127.0.0.1", port=served.port, key=served.pusher.key,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:  # fmt: skip
        yield client


async def log_in(served: Served, email: str) -> dict[str, Any]:
    answer = await served.http.post("/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_entity_events_reach_the_users_private_channel(served: Served) -> None:
    token, entity = await served.account("ada@example.test")
    async with pusher_js(served, token) as client:
        channel = f"private-session-{entity}"
        await client.subscribe(channel)
        # Another login (an API call) opens a session: the event arrives.
        other = await log_in(served, "ada@example.test")
        opened = await client.next("event", channel=channel, event="create")
        assert opened["data"]["type"] == "session.opened"
        ended = await served.http.post(
            "/logout", headers={"Authorization": f"Bearer {other['access_token']}"}
        )
        assert ended.status_code == 200
        closed = await client.next("event", channel=channel, event="delete")
        assert closed["data"]["type"] == "session.ended"
        assert closed["data"]["id"] == opened["data"]["id"] + 1
        # Someone else's channel is refused by /pusher/auth.
        _, bob = await served.account("bob@example.test")
        with pytest.raises(SubscriptionRefused) as refused:
            await client.subscribe(f"private-session-{bob}")
        assert refused.value.status == 403


async def test_presence_and_client_events_between_two_users(served: Served) -> None:
    ada, ada_id = await served.account("ada@example.test")
    bob, bob_id = await served.account("bob@example.test")
    room = "presence-lobby"
    async with pusher_js(served, ada) as first:
        joined = await first.subscribe(room)
        assert joined["members"]["count"] == 1 and joined["members"]["me"]["id"] == ada_id
        async with pusher_js(served, bob) as second:
            seen = await second.subscribe(room)
            assert seen["members"]["count"] == 2
            assert {m["id"] for m in seen["members"]["list"]} == {ada_id, bob_id}
            added = await first.next("member_added", channel=room)
            assert added["member"]["id"] == bob_id
            assert added["member"]["info"] == {"name": "someone"}  # never an email
            assert await second.trigger(room, "client-wave", {"hello": "ada"})
            wave = await first.next("event", channel=room, event="client-wave")
            assert wave["data"] == {"hello": "ada"} and wave["user_id"] == bob_id
        removed = await first.next("member_removed", channel=room)
        assert removed["member"]["id"] == bob_id


async def test_a_reconnecting_client_gets_exactly_what_it_missed(served: Served) -> None:
    token, entity = await served.account("ada@example.test")
    channel = f"private-session-{entity}"
    async with pusher_js(served, token) as client:
        await client.subscribe(channel)
        await log_in(served, "ada@example.test")
        last = (await client.next("event", channel=channel))["data"]["id"]
    # Offline: three more logins.
    for _ in range(3):
        await log_in(served, "ada@example.test")
    await served.drain()
    async with pusher_js(served, token) as client:
        await client.subscribe(channel)
        assert await client.send_event("issuer:replay", {"since": last}, channel)
        replayed = [await client.next("event", channel=channel) for _ in range(3)]
        assert [e["data"]["id"] for e in replayed] == [last + 1, last + 2, last + 3]
        assert {e["data"]["type"] for e in replayed} == {"session.opened"}
        # The replay says how far it reached: where the next replay may start.
        reached = await client.next("event", channel=channel)
        assert (reached["event"], reached["data"]) == (
            "issuer:replayed",
            {"through": last + 3, "more": False},
        )
        # Nothing more: the next event is a new one.
        await log_in(served, "ada@example.test")
        fresh = await client.next("event", channel=channel)
        assert fresh["data"]["id"] == last + 4
