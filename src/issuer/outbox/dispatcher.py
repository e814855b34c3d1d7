"""Delivering the outbox: claim a batch, send each message, mark it sent or schedule a retry.

Claiming is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``, which
sets a lease (``locked_until``), so several workers share the work without sending a message
twice; on SQLite (one worker) the same statement runs without the row locks. The messages of a
batch are marked sent by the claim of the next batch, right after their delivery (on PostgreSQL
one statement, outside a transaction: one round trip per batch). Failures back off
exponentially; after ``max_attempts`` the message is marked failed and logged as an error. A
process killed between commit and delivery, or between delivery and the mark, leaves leased
rows that the next dispatcher picks up once the lease runs out: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
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
        mark_delay: float = 0.05,
    ) -> None:
        """``mark_delay``: seconds delivered messages may wait for the next claim to mark
        them sent (meanwhile their lease keeps other dispatchers away)."""
        self.db = db
        self._deliver = deliver
        self.clock = clock or SystemClock()
        self.batch = batch
        self.lease = timedelta(seconds=lease)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.poll_interval = poll_interval
        self.mark_delay = mark_delay
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was just committed: look now instead of at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set, finishing the batch in hand (a transaction cut by
        cancellation can leave SQLite's write lock behind).

        The messages of a batch are marked sent by the statement that claims the next batch:
        the one a wake-up brings (a commit), or at the latest ``mark_delay`` seconds after the
        delivery — under a stream of events one round trip each, not one to claim, one to
        mark and one to find nothing more. A wake-up that comes while a batch is out is not
        lost: the next round runs at once."""
        waiting = asyncio.ensure_future(stopping.wait())
        sent: list[int] = []
        try:
            while not stopping.is_set():
                self._wake.clear()  # what commits from now on, the next round claims
                try:
                    claimed = await self.claim(sent)
                    sent = []
                    sent = await self.deliver(claimed)
                except Exception:
                    log.exception("outbox dispatch failed; retrying")
                    claimed = []
                    self._wake.clear()  # wait a poll interval before the next try
                if len(claimed) >= self.batch or stopping.is_set():
                    continue  # more may be due
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {woken, waiting},
                    timeout=self.mark_delay if sent else self.poll_interval,
                    return_when="FIRST_COMPLETED",
                )
                woken.cancel()
        finally:
            waiting.cancel()
            if sent:
                await self._mark_sent_on_the_way_out(sent)

    async def _mark_sent_on_the_way_out(self, sent: list[int]) -> None:
        try:
            await self.mark_sent(sent)
        except Exception:  # their leases run out and they are sent again: at least once
            log.exception("outbox: %d delivered messages could not be marked sent", len(sent))

    async def claim(self, sent: Sequence[int] = ()) -> list[OutboxMessage]:
        """Mark the messages ``sent`` (ids) delivered and lease the next batch: one statement
        on PostgreSQL (and with ``SKIP LOCKED``, so several workers claim at once)."""
        now = self.clock.now()
        async with self.db.statement() as session:
            return await queries.claim(
                session,
                now=now,
                lease_until=now + self.lease,
                limit=self.batch,
                skip_locked=self.db.is_postgres,
                sent=sent,
            )

    async def mark_sent(self, sent: Sequence[int]) -> None:
        async with self.db.statement() as session:
            await queries.mark_sent(session, sent, self.clock.now())

    async def deliver(self, claimed: list[OutboxMessage]) -> list[int]:
        """Deliver a claimed batch concurrently; the ids of the messages delivered (those that
        failed are rescheduled or given up on here)."""
        done = await asyncio.gather(*(self._attempt(message) for message in claimed))
        return [message.id for message, ok in zip(claimed, done, strict=True) if ok]

    async def run_once(self) -> int:
        """Deliver one batch and mark it; returns how many messages it claimed."""
        claimed = await self.claim()
        sent = await self.deliver(claimed)
        if sent:
            await self.mark_sent(sent)
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

    async def _attempt(self, message: OutboxMessage) -> bool:
        try:
            await self._deliver(message)
        except Exception as exc:
            await self._failed(message, exc)
            return False
        DELIVERED.labels(message.kind).inc()
        return True

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
