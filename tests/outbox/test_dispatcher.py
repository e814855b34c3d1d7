"""The dispatcher's rounds: a batch's marks ride on the next claim (one statement on
PostgreSQL), a wake-up during a delivery is not lost, marks still pending when it stops are
written, and a message delivered but never marked is delivered again (at least once).

On SQLite and PostgreSQL, against the real database; deliveries are recorded in memory.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import delete, select

from issuer.clock import ManualClock, SystemClock
from issuer.db import Database
from issuer.outbox.dispatcher import Dispatcher
from issuer.outbox.models import OutboxMessage
from issuer.outbox.service import Outbox
from tests.support.portal import wait_until


async def queue_events(db: Database, topics: list[str]) -> None:
    writer = Outbox(SystemClock(), wake=lambda: None)
    async with db.transaction() as session:
        for topic in topics:
            await writer.event(session, topic, {"n": topic})


async def rows(db: Database) -> dict[str, OutboxMessage]:
    async with db.session() as session:
        return {m.topic: m for m in await session.scalars(select(OutboxMessage))}


class Recorder:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    async def __call__(self, message: OutboxMessage) -> None:
        self.seen[message.topic] += 1


async def cleanup(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(delete(OutboxMessage))
    await db.dispose()


async def test_a_wake_during_a_delivery_is_not_lost(database_url: str) -> None:
    db = Database(database_url)
    seen: list[str] = []
    stopping = asyncio.Event()
    # Polling would find the second event only after a minute: a wake-up must bring it.
    dispatcher: Dispatcher

    async def deliver(message: OutboxMessage) -> None:
        seen.append(message.topic)
        if message.topic == "first":  # committed while the first is out, then a wake-up
            await queue_events(db, ["second"])
            dispatcher.wake()

    dispatcher = Dispatcher(db, deliver, poll_interval=60)
    try:
        await queue_events(db, ["first"])
        running = asyncio.create_task(dispatcher.run(stopping))
        dispatcher.wake()

        async def both() -> bool:
            return seen == ["first", "second"]

        await wait_until(both, timeout=10, what="the second event, woken during the first")
        stopping.set()
        await asyncio.wait_for(running, 10)
        found = await rows(db)
        assert all(m.sent_at is not None and m.locked_until is None for m in found.values())
    finally:
        stopping.set()
        await cleanup(db)


async def test_marks_pending_at_a_stop_are_written(database_url: str) -> None:
    db = Database(database_url)
    recorder = Recorder()
    stopping = asyncio.Event()
    dispatcher = Dispatcher(db, recorder, poll_interval=60)
    try:
        await queue_events(db, [f"e{i}" for i in range(5)])
        running = asyncio.create_task(dispatcher.run(stopping))

        async def delivered() -> bool:
            return len(recorder.seen) == 5

        await wait_until(delivered, timeout=10, what="five deliveries")
        stopping.set()
        await asyncio.wait_for(running, 10)
        found = await rows(db)
        assert len(found) == 5 and all(m.sent_at is not None for m in found.values())
        assert all(m.attempts == 1 for m in found.values())
        assert set(recorder.seen.values()) == {1}
    finally:
        stopping.set()
        await cleanup(db)


async def test_marking_a_batch_never_claims_it_again(database_url: str) -> None:
    db = Database(database_url)
    try:
        await queue_events(db, ["slow"])
        clock = ManualClock()  # from now on, time moves by hand
        dispatcher = Dispatcher(db, Recorder(), clock=clock, lease=60)
        (claimed,) = await dispatcher.claim()
        clock.advance(61)  # the delivery outlasted its lease, then succeeded
        assert await dispatcher.claim([claimed.id]) == []
        found = (await rows(db))["slow"]
        assert found.sent_at is not None and found.locked_until is None and found.attempts == 1
        assert await dispatcher.claim() == []
    finally:
        await cleanup(db)


async def test_delivered_but_never_marked_is_delivered_again(database_url: str) -> None:
    db = Database(database_url)
    first, second = Recorder(), Recorder()
    try:
        await queue_events(db, ["lost mark"])
        clock = ManualClock()
        crashed = Dispatcher(db, first, clock=clock, lease=60)
        delivered = await crashed.deliver(await crashed.claim())
        assert len(delivered) == 1  # ... and the process dies before the next claim marks it
        survivor = Dispatcher(db, second, clock=clock, lease=60)
        assert await survivor.run_once() == 0  # leased
        clock.advance(61)
        assert await survivor.run_once() == 1
        assert first.seen == second.seen == Counter({"lost mark": 1})  # at least once
        found = (await rows(db))["lost mark"]
        assert found.sent_at is not None and found.attempts == 2
    finally:
        await cleanup(db)


async def test_a_failed_delivery_is_retried_while_the_others_are_marked(
    database_url: str,
) -> None:
    db = Database(database_url)
    failures: Counter[str] = Counter()

    async def flaky(message: OutboxMessage) -> Any:
        if message.topic == "flaky" and not failures["flaky"]:
            failures["flaky"] += 1
            raise ConnectionError("broker away")

    try:
        await queue_events(db, ["flaky", "fine"])
        clock = ManualClock()
        dispatcher = Dispatcher(db, flaky, clock=clock, backoff_base=5)
        assert await dispatcher.run_once() == 2
        found = await rows(db)
        assert found["fine"].sent_at is not None
        assert found["flaky"].sent_at is None and found["flaky"].locked_until is None
        assert "broker away" in (found["flaky"].last_error or "")
        assert await dispatcher.run_once() == 0  # backing off
        clock.advance(6)
        assert await dispatcher.run_once() == 1
        assert (await rows(db))["flaky"].sent_at is not None
    finally:
        await cleanup(db)


async def test_a_delivered_batch_is_marked_without_waiting_for_the_next_commit(
    database_url: str,
) -> None:
    db = Database(database_url)
    recorder = Recorder()
    stopping = asyncio.Event()
    # No commit follows and polling would take a minute: the mark must not wait for either.
    dispatcher = Dispatcher(db, recorder, poll_interval=60, mark_delay=0.01)
    try:
        await queue_events(db, ["alone"])
        running = asyncio.create_task(dispatcher.run(stopping))

        async def marked() -> bool:
            return (await rows(db))["alone"].sent_at is not None

        await wait_until(marked, timeout=10, what="the mark of a delivered event")
        assert recorder.seen == Counter({"alone": 1})
        stopping.set()
        await asyncio.wait_for(running, 10)
    finally:
        stopping.set()
        await cleanup(db)
