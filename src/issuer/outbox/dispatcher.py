"""Delivering the outbox: claim a batch, send each message, mark it sent or schedule a retry.

Claiming is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``, which
sets a lease (``locked_until``), so several workers share the work without sending a message
twice; on SQLite (one worker) the same statement runs without the row locks. Failures back off
exponentially; after ``max_attempts`` the message is marked failed and logged as an error. A
process killed between commit and delivery leaves rows that the next dispatcher picks up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from prometheus_client import Counter
from sqlalchemy import or_, select, update

from issuer.db import Database, utcnow
from issuer.outbox.delivery import NoTransport
from issuer.outbox.models import OutboxMessage

log = logging.getLogger(__name__)
DELIVERED = Counter("issuer_outbox_delivered_total", "Outbox messages delivered", ["kind"])
FAILED = Counter("issuer_outbox_failed_total", "Outbox messages given up on", ["kind"])

Deliver = Callable[[OutboxMessage], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        db: Database,
        deliver: Deliver,
        *,
        batch: int = 20,
        lease: float = 60.0,
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.db = db
        self._deliver = deliver
        self.batch = batch
        self.lease = timedelta(seconds=lease)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Something was just committed: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run_forever`` (graceful shutdown: a
        transaction cut by cancellation can leave SQLite's write lock behind)."""
        self._stopping = True
        self._wake.set()

    async def run_forever(self) -> None:
        self._stopping = False
        while not self._stopping:
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("outbox dispatch failed; retrying")
                busy = 0
            if busy < self.batch and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def claim(self) -> list[OutboxMessage]:
        now = utcnow()
        due = (
            select(OutboxMessage.id)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
            .where(OutboxMessage.available_at <= now)
            .where(or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now))
            .order_by(OutboxMessage.id)
            .limit(self.batch)
        )
        if self.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        async with self.db.transaction() as session:
            rows = await session.scalars(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(due.scalar_subquery()))
                .values(locked_until=now + self.lease, attempts=OutboxMessage.attempts + 1)
                .returning(OutboxMessage)
                .execution_options(synchronize_session=False)
            )
            return list(rows)

    async def run_once(self) -> int:
        """Deliver one batch; returns how many messages it claimed."""
        claimed = await self.claim()
        await asyncio.gather(*(self._attempt(message) for message in claimed))
        return len(claimed)

    async def _attempt(self, message: OutboxMessage) -> None:
        try:
            await self._deliver(message)
        except Exception as exc:
            await self._failed(message, exc)
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id)
                .values(sent_at=utcnow(), locked_until=None, last_error=None)
            )
        DELIVERED.labels(message.kind).inc()

    async def _failed(self, message: OutboxMessage, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        now = utcnow()
        values: dict[str, object] = {"last_error": error, "locked_until": None}
        # No SMTP server configured is not a failed try: the email waits until there is one.
        if message.attempts >= self.max_attempts and not isinstance(exc, NoTransport):
            values["failed_at"] = now
            FAILED.labels(message.kind).inc()
            log.error(
                "outbox %s %s gave up after %d attempts: %s",
                message.kind, message.event_id, message.attempts, error,
            )  # fmt: skip
        else:
            exponent = min(message.attempts - 1, 30)  # waiting without a limit: no overflow
            delay = min(self.backoff_base * 2**exponent, self.backoff_max)
            values["available_at"] = now + timedelta(seconds=delay)
            log.warning(
                "outbox %s %s attempt %d failed (%s); retry in %.1fs",
                message.kind, message.event_id, message.attempts, error, delay,
            )  # fmt: skip
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message.id).values(values)
            )
