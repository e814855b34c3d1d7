"""Domain events from the outbox to the real RabbitMQ on this machine (aio-pika).

Each test declares its own durable topic exchange (a unique name) and an exclusive queue bound
with ``#``, and deletes both afterwards. The app reaches the broker through a small TCP proxy in
the test, so the test can cut the connection (and refuse new ones for a while) and bring it back:
no event may be lost.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from issuer.issuance.states import State
from issuer.outbox.amqp import EventPublisher
from issuer.services import services_of
from tests.accounts.conftest import PASSWORD, bearer, running
from tests.fakes import FakeAgent
from tests.outbox.conftest import Mailbox, outbox
from tests.outbox.test_flows import NEW_PASSWORD, new_email, path_of, signup
from tests.support.portal import wait_until

BROKER_HOST, BROKER_PORT = "127.0.0.1", 5672
AMQP = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}/"


class Consumer:
    """An exclusive queue bound to the test's exchange with ``#``; collects what arrives."""

    def __init__(self) -> None:
        self.exchange = f"issuer.test.{secrets.token_hex(6)}"
        self.messages: list[AbstractIncomingMessage] = []

    async def start(self) -> Consumer:
        self._connection = await aio_pika.connect(AMQP, timeout=10)
        channel = await self._connection.channel()
        self._exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue(exclusive=True)
        await self._queue.bind(self._exchange, "#")
        await self._queue.consume(self._on_message)
        return self

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self.messages.append(message)

    async def wait(self, count: int, timeout: float = 20.0) -> list[AbstractIncomingMessage]:
        async def enough() -> bool:
            return len(self.messages) >= count

        await wait_until(enough, timeout=timeout, interval=0.05)
        return list(self.messages)

    async def stop(self) -> None:
        try:
            await self._queue.delete(if_unused=False, if_empty=False)
            await self._exchange.delete()
        finally:
            await self._connection.close()


class Proxy:
    """A TCP proxy to the broker that can cut every connection and refuse new ones."""

    def __init__(self) -> None:
        self.up = True
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        # Robust connections retry every 0.2 s (not 5 s): the publisher reconnects quickly.
        return f"amqp://guest:guest@127.0.0.1:{self.port}/?reconnect_interval=0.2"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(BROKER_HOST, BROKER_PORT)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)

    def cut(self) -> None:
        """Drop every open connection (both directions, no AMQP close) and refuse new ones."""
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every robust connection the publisher opens, in order (to check none is left open)."""
    connections: list[Any] = []
    real = aio_pika.connect_robust

    async def spy(*args: Any, **kwargs: Any) -> Any:
        connection = await real(*args, **kwargs)
        connections.append(connection)
        return connection

    monkeypatch.setattr(aio_pika, "connect_robust", spy)
    return connections


def only_the_last_open(connections: list[Any]) -> bool:
    return all(c.is_closed for c in connections[:-1]) and not connections[-1].is_closed


async def failed_once(app: Any, topic: str) -> bool:
    """Whether a publish of the ``topic`` event has failed (the broker was unreachable)."""
    return any(m.topic == topic and m.last_error for m in await outbox(app, "event"))


@pytest.fixture
async def consumer() -> AsyncIterator[Consumer]:
    started = await Consumer().start()
    yield started
    await started.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    started = await Proxy().start()
    yield started
    await started.stop()


def check(message: AbstractIncomingMessage, event_ids: dict[str, str]) -> dict[str, Any]:
    """One published event: persistent JSON, ``message_id`` = outbox event id, ``type`` = topic."""
    body: dict[str, Any] = json.loads(message.body)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.message_id == body["id"] and message.type == body["type"]
    assert message.routing_key == body["type"]
    assert event_ids[body["id"]] == body["type"]
    assert body["occurred_at"] and isinstance(body["data"], dict)
    return body


async def accept_a_credential(app: Any, fake_agent: FakeAgent) -> str:
    """Drive one issuance session from invited to accepted through the service's transitions."""
    service = services_of(app).issuance
    row, _ = await service.start("en")
    assert await service.transition(row.id, State.CONNECTED, connection_id="conn-1")
    assert await service.transition(row.id, State.OFFERED, exchange_id="ex-1")
    assert await service.transition(row.id, State.ACCEPTED)
    return str(row.id)


async def event_ids(app: Any) -> dict[str, str]:
    return {str(m.event_id): m.topic for m in await outbox(app, "event")}


# Signing up (the account, its password login method), the emailed link and the login (a
# session each), the password change (which ends the link's session), the credential.
EXPECTED = sorted([
    "user.created", "login_method.created", "user.verified", "session.opened", "session.opened",
    "password.changed", "session.ended", "credential.accepted",
])  # fmt: skip


async def test_events_reach_the_exchange(
    overrides: dict[str, Any], consumer: Consumer, mailbox: Mailbox, fake_agent: FakeAgent
) -> None:
    settings = {"amqp_url": AMQP, "amqp_exchange": consumer.exchange}
    async with running(overrides, with_agent=fake_agent, **settings) as app:
        client = app.test_client()
        address = new_email()
        await signup(client, address)
        (mail,) = await mailbox.wait(address)
        assert (await client.post(path_of(mail))).status_code == 200
        login = await client.post("/login", json={"email": address, "password": PASSWORD})
        token = (await login.get_json())["access_token"]
        changed = await client.post(
            "/update_password",
            json={"existing_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(token),
        )
        assert changed.status_code == 200
        session_id = await accept_a_credential(app, fake_agent)

        messages = await consumer.wait(len(EXPECTED))
        ids = await event_ids(app)
    # Each event once, in no promised order (a batch is published concurrently).
    bodies = [check(m, ids) for m in messages]
    by_type = {b["type"]: b for b in bodies}
    found = sorted(b["type"] for b in bodies)
    assert found == EXPECTED, found
    assert sorted(b["id"] for b in bodies) == sorted(ids)
    assert by_type["user.created"]["data"]["email"] == address
    assert (
        by_type["user.verified"]["data"]["entity_id"]
        == by_type["user.created"]["data"]["entity_id"]
    )
    assert by_type["credential.accepted"]["data"]["session_id"] == session_id


async def test_no_event_lost_when_the_broker_connection_drops(
    overrides: dict[str, Any],
    consumer: Consumer,
    proxy: Proxy,
    mailbox: Mailbox,
    fake_agent: FakeAgent,
    opened: list[Any],
) -> None:
    settings = {
        "amqp_url": proxy.url,
        "amqp_exchange": consumer.exchange,
        "outbox_backoff": 0.1,
        "outbox_backoff_max": 0.5,
        "outbox_max_attempts": 100,
    }
    async with running(overrides, with_agent=fake_agent, **settings) as app:
        client = app.test_client()
        address = new_email()
        await signup(client, address)
        await consumer.wait(1)  # user.created: the publisher is connected

        proxy.cut()  # the connection drops and the broker stays unreachable for a while
        (mail,) = await mailbox.wait(address)
        assert (await client.post(path_of(mail))).status_code == 200  # user.verified
        await wait_until(lambda: failed_once(app, "user.verified"), what="a failed publish")
        proxy.restore()
        await consumer.wait(2)

        proxy.cut()  # a drop that comes straight back
        proxy.restore()
        await accept_a_credential(app, fake_agent)  # credential.accepted
        await client.post("/forgot_password", json={"email": address})
        reset = (await mailbox.wait(address, 2))[-1]
        proxy.cut()
        response = await client.post(path_of(reset), json={"password": NEW_PASSWORD})
        assert response.status_code == 200  # password.changed
        await wait_until(lambda: failed_once(app, "password.changed"), what="a failed publish")
        proxy.restore()

        async def all_sent() -> bool:
            return all(m.sent_at for m in await outbox(app, "event"))

        await wait_until(all_sent, timeout=30)
        ids = await event_ids(app)
        messages = await consumer.wait(len(ids), timeout=30)
        rows = await outbox(app, "event")
        # Every connection the publisher gave up on was closed (none left to reconnect).
        assert len(opened) >= 2 and only_the_last_open(opened), opened
    bodies = [check(m, ids) for m in messages]
    # At least once: every event arrived; a consumer de-duplicates on the id.
    assert {b["id"] for b in bodies} == set(ids)
    # Signing up, the link (and its login), the credential, the reset (ending that login).
    assert sorted(ids.values()) == sorted([
        "user.created", "login_method.created", "user.verified", "session.opened",
        "credential.accepted", "password.changed", "session.ended",
    ])  # fmt: skip
    assert any(r.attempts > 1 for r in rows)  # some publish really failed and was retried
    assert proxy.accepted >= 2  # the publisher reconnected


async def test_concurrent_publishes_share_one_connection(
    consumer: Consumer, proxy: Proxy, opened: list[Any]
) -> None:
    """A batch is delivered concurrently: the publisher must not open a connection per event."""
    publisher = EventPublisher(proxy.url, consumer.exchange, timeout=10)
    try:
        ids = [str(uuid.uuid4()) for _ in range(10)]
        await asyncio.gather(*(publisher.publish(i, "test.batch", {"id": i}) for i in ids))
        proxy.cut()  # the connection drops; the next batch reconnects, once
        proxy.restore()
        more = [str(uuid.uuid4()) for _ in range(10)]
        results = await asyncio.gather(
            *(publisher.publish(i, "test.batch", {"id": i}) for i in more), return_exceptions=True
        )
        failed = [m for m, r in zip(more, results, strict=True) if isinstance(r, BaseException)]
        for event_id in failed:  # what the dispatcher does: try again
            await publisher.publish(event_id, "test.batch", {"id": event_id})
        received = await consumer.wait(20)
        assert {m.message_id for m in received} == set(ids + more)
        # One connection per outage, the broken one closed: two opened, the first closed.
        assert len(opened) == 2 and only_the_last_open(opened), opened
        assert proxy.accepted == 2, proxy.accepted
    finally:
        await publisher.close()
    assert all(c.is_closed for c in opened)
