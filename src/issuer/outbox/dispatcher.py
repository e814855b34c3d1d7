"""Delivering the outbox: claim a batch, send each message, mark it sent or schedule a retry.

Claiming is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``, which
sets a lease (``locked_until``), so several workers share the work without sending a message
twice; on SQLite (one worker) the same statement runs without the row locks. Failures back off
exponentially; after ``max_attempts`` the message is marked failed and logged as an error. A
process killed between commit and delivery leaves rows that the next dispatcher picks up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from prometheus_client import Counter

from issuer.clock import Clock, SystemClock
from issuer.db import Database
from issuer.ops.metrics import OUTBOX_ATTEMPT_FAILURES
from issuer.outbox import queries
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
        clock: Clock | None = None,
        batch: int = 20,
        lease: float = 60.0,
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.db = db
        self._deliver = deliver
        self.clock = clock or SystemClock()
        self.batch = batch
        self.lease = timedelta(seconds=lease)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was just committed: look now instead of at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set, finishing the batch in hand (a transaction cut by
        cancellation can leave SQLite's write lock behind)."""
        waiting = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                try:
                    busy = await self.run_once()
                except Exception:
                    log.exception("outbox dispatch failed; retrying")
                    busy = 0
                if busy < self.batch and not stopping.is_set():
                    self._wake.clear()
                    woken = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait(
                        {woken, waiting}, timeout=self.poll_interval, return_when="FIRST_COMPLETED"
                    )
                    woken.cancel()
        finally:
            waiting.cancel()

    async def claim(self) -> list[OutboxMessage]:
        now = self.clock.now()
        async with self.db.transaction() as session:
            return await queries.claim(
                session,
                now=now,
                lease_until=now + self.lease,
                limit=self.batch,
                skip_locked=self.db.is_postgres,
            )

    async def run_once(self) -> int:
        """Deliver one batch; returns how many messages it claimed."""
        claimed = await self.claim()
        await asyncio.gather(*(self._attempt(message) for message in claimed))
        return len(claimed)

    async def drain(self) -> None:
        """Deliver (or reschedule) everything due now, also what another dispatcher holds;
        returns when nothing due is left. For tests and one-shot jobs (bound it with
        ``asyncio.timeout``)."""
        while True:
            if await self.run_once():
                continue
            async with self.db.session() as session:
                if not await queries.count_pending(session, self.clock.now()):
                    return
            # Leased elsewhere: that dispatcher is delivering; look again shortly.
            await asyncio.sleep(0.05)

    async def _attempt(self, message: OutboxMessage) -> None:
        try:
            await self._deliver(message)
        except Exception as exc:
            await self._failed(message, exc)
            return
        async with self.db.transaction() as session:
            await queries.mark_sent(session, message.id, self.clock.now())
        DELIVERED.labels(message.kind).inc()

    async def _failed(self, message: OutboxMessage, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        OUTBOX_ATTEMPT_FAILURES.labels(message.kind, type(exc).__name__).inc()
        now = self.clock.now()
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
            await queries.mark_attempt_failed(session, message.id, values)
