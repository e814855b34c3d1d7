"""Issuance logic: sessions, transitions, agent events, reconciliation and expiry.

Every transition is one conditional ``UPDATE … WHERE state IN (allowed predecessors)
RETURNING``, so duplicate and out-of-order agent events are harmless; its snapshot goes to the
broker and (for an accepted credential) its event to the outbox in the same transaction. No
transaction is held open across a call to the agent: a step that needs the agent claims its
row first (so it runs once), calls the agent, then records the answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Conflict, NotFound, Unavailable
from issuer.issuance import queries
from issuer.issuance.agents.base import Agent, AgentUnavailable, ExchangeStatus, Invitation
from issuer.issuance.arrivals import Arrivals
from issuer.issuance.invitations import is_public_id, new_public_id
from issuer.issuance.models import ERROR_LIMIT, TOPIC_PREFIX, IssuanceSession, topic
from issuer.issuance.states import State
from issuer.ops.metrics import ISSUANCE_DURATION, TRANSITIONS
from issuer.outbox.service import Outbox
from issuer.realtime.broker import Broker, Message

log = logging.getLogger(__name__)
# An event for a record not stored yet waits this long for it (woken at once when this worker
# stores it, looking again every EVENT_RECHECK seconds for another worker's), then is left to
# the sweeper's reconciliation.
EVENT_WAIT = 30.0
EVENT_RECHECK = 1.0

EXCHANGE_TO_STATE = {
    ExchangeStatus.ACCEPTED: State.ACCEPTED,
    ExchangeStatus.DECLINED: State.DECLINED,
    ExchangeStatus.FAILED: State.FAILED,
}


def agent_down() -> Unavailable:
    return Unavailable(
        "The credential agent is not reachable right now. Please try again in a moment.",
        code="agent_unavailable",
        retry_after=5,
    )


Snapshot = Message


def snapshot_replay(db: Database) -> Callable[[list[str]], Awaitable[list[tuple[str, Message]]]]:
    """What a reconnecting broker delivers again: the stored snapshot of every issuance
    session listened to (notifications sent while the LISTEN connection was away are gone)."""

    async def replay(topics: list[str]) -> list[tuple[str, Message]]:
        session_ids = [t.removeprefix(TOPIC_PREFIX) for t in topics if t.startswith(TOPIC_PREFIX)]
        if not session_ids:
            return []
        async with db.session() as session:
            rows = await queries.by_ids(session, session_ids)
        return [(topic(row.id), row.snapshot()) for row in rows]

    return replay


class IssuanceService:
    def __init__(
        self,
        db: Database,
        agent: Agent | None,
        broker: Broker,
        outbox: Outbox,
        clock: Clock,
        *,
        offer_timeout: float,
        invitation_timeout: float,
    ) -> None:
        """``agent`` ``None``: none is configured; every step that needs one answers 503."""
        self.db = db
        self._agent = agent
        self.broker = broker
        self.outbox = outbox
        self.clock = clock
        self.offer_timeout = timedelta(seconds=offer_timeout)
        self.invitation_timeout = timedelta(seconds=invitation_timeout)
        self.arrivals = Arrivals()

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            raise Unavailable("No credential agent is configured.", code="agent_not_configured")
        return self._agent

    @property
    def agent_pushes_events(self) -> bool:
        return self._agent is not None and self._agent.pushes_events

    # --- reading -------------------------------------------------------------------------

    async def get(self, session_id: str) -> IssuanceSession | None:
        async with self.db.reading() as session:
            return await queries.get(session, session_id)

    # --- transitions ---------------------------------------------------------------------

    async def transition(self, session_id: str, target: State, **fields: Any) -> Snapshot | None:
        """Move a session to ``target`` if its current state allows it; ``None`` if not."""
        return await self.transition_by("id", session_id, target, **fields)

    async def transition_by(
        self, column: str, value: str, target: State, **fields: Any
    ) -> Snapshot | None:
        """:meth:`transition` of the session whose ``column`` is ``value`` (an agent event's
        ``invitation_msg_id``, ``connection_id`` or ``exchange_id``): one statement, no lookup
        first, which also publishes the snapshot on PostgreSQL (one round trip in all). An
        accepted credential's event goes to the outbox in the same transaction."""
        now = self.clock.now()
        if fields.get("error"):
            fields["error"] = fields["error"][:ERROR_LIMIT]
        notify = self.broker.notifies_in_sql
        if target is State.ACCEPTED:
            async with self.db.transaction() as session:
                row = await queries.transition_by(
                    session, column, value, target, now, fields, notify=notify
                )
                if row is not None:
                    await self.outbox.event(
                        session,
                        "credential.accepted",
                        {
                            "session_id": row.id,
                            "exchange_id": row.exchange_id,
                            "language": row.language,
                        },
                    )
        else:
            async with self.db.statement() as session:
                row = await queries.transition_by(
                    session, column, value, target, now, fields, notify=notify
                )
        if row is None:
            return None
        snapshot = row.snapshot()
        if not notify:  # committed: this worker's listeners are all there are
            self.broker.deliver(topic(row.id), snapshot)
        TRANSITIONS.labels(target.value).inc()
        if target.is_final and row.finished_at is not None:
            elapsed = (row.finished_at - row.created_at).total_seconds()
            ISSUANCE_DURATION.labels(target.value).observe(max(elapsed, 0.0))
        log.info("issuance %s… → %s", row.id[:8], target)
        return snapshot

    # --- the flow ------------------------------------------------------------------------

    async def start(self, language: str) -> tuple[IssuanceSession, Invitation]:
        """Ask the agent for an invitation, then store the new session with it (and the short
        id of its invitation URL, ``/i/<id>``)."""
        try:
            invitation = await self.agent.create_invitation()
        except AgentUnavailable as exc:
            log.warning("invitation failed: %s", exc)
            raise agent_down() from exc
        now = self.clock.now()
        values = {
            "id": secrets.token_urlsafe(32),
            "state": State.INVITED.value,
            "version": 1,
            "language": language,
            "invitation_url": invitation.url,
            "invitation_public_id": new_public_id(),
            "invitation_msg_id": invitation.invitation_msg_id,
            "connection_id": invitation.connection_id,
            "created_at": now,
            "updated_at": now,
            "expires_at": now + self.invitation_timeout,
        }
        async with self.db.statement() as session:
            row = await queries.add(session, values)
        self.arrivals.stored("invitation_msg_id", row.invitation_msg_id)
        self.arrivals.stored("connection_id", row.connection_id)
        return row, invitation

    async def offer(self, session_id: str, attributes: dict[str, str]) -> Snapshot:
        """Send the credential offer for a connected session; a conflict unless it is."""
        connection_id = await self._claim_offer(session_id, attributes)
        try:
            exchange_id = await self.agent.send_offer(connection_id, attributes)
        except AgentUnavailable as exc:
            async with self.db.transaction() as session:
                await queries.release_offer(session, session_id)
            log.warning("offer failed: %s", exc)
            raise agent_down() from exc
        now = self.clock.now()
        snapshot = await self.transition(
            session_id,
            State.OFFERED,
            exchange_id=exchange_id,
            offered_at=now,
            expires_at=now + self.offer_timeout,
        )
        self.arrivals.stored("exchange_id", exchange_id)
        if snapshot is None:  # expired or failed while the agent was answering
            current = await self.get(session_id)
            state = current.state if current else "gone"
            raise Conflict(f"The session is {state}.", code="session_over")
        return snapshot

    async def _claim_offer(self, session_id: str, attributes: dict[str, str]) -> str:
        """Claim the offer of a connected session (one ``UPDATE``); its connection id. Only a
        refused claim reads the session: to say why, or to catch up with a connection whose
        webhook was missed (then it claims again)."""
        caught_up = False
        while True:
            async with self.db.statement() as session:
                connection_id = await queries.claim_offer(session, session_id, attributes)
            if connection_id is not None:
                return connection_id
            row = await self.get(session_id)
            if row is None:
                raise NotFound("No such issuance session.")
            if row.state == State.CONNECTED and row.connection_id is not None:
                raise Conflict(
                    "A credential offer is already on its way.", code="offer_in_progress"
                )
            if caught_up or row.state != State.INVITED or not await self._caught_up(row):
                raise Conflict(f"The session is {row.state}, not connected.", code="not_connected")
            caught_up = True

    async def _caught_up(self, row: IssuanceSession) -> bool:
        """Whether reading the agent's record moved an ``invited`` session to ``connected``."""
        try:
            moved = await self.reconcile(row)
        except AgentUnavailable as exc:
            log.warning("connection check failed: %s", exc)
            raise agent_down() from exc
        return moved is not None and moved.state == State.CONNECTED

    # --- agent events --------------------------------------------------------------------
    # Webhooks can overtake the HTTP answer that created their record (ACA-Py sends
    # ``offer-sent`` a few ms before ``send-offer`` returns), so an event for a record we have
    # not stored yet waits for it (``issuer.issuance.arrivals``) before it is left to
    # reconciliation.

    async def connection_active(
        self, *, connection_id: str | None, invitation_msg_id: str | None, wait: float = 0.0
    ) -> bool:
        """Apply an ``active`` connection event; ``False`` when no session matched within
        ``wait`` seconds (none: look once).

        The session is matched by ``invitation_msg_id``, else by ``connection_id``; a session
        that is past ``invited`` already (a repeated event) counts as matched."""
        keys = [
            (column, value)
            for column, value in (
                ("invitation_msg_id", invitation_msg_id),
                ("connection_id", connection_id),
            )
            if value
        ]

        async def move() -> bool:
            for column, value in keys:
                if await self._connected(column, value, connection_id):
                    return True
            return False

        return await self._applied(keys, move, wait)

    async def _connected(self, column: str, value: str, connection_id: str | None) -> bool:
        now = self.clock.now()
        fields: dict[str, Any] = {"connected_at": now, "expires_at": now + self.invitation_timeout}
        if connection_id:
            fields["connection_id"] = connection_id
        return await self.transition_by(column, value, State.CONNECTED, **fields) is not None

    async def exchange_finished(
        self, exchange_id: str, status: ExchangeStatus, detail: str | None = None, wait: float = 0.0
    ) -> bool:
        """Apply a final exchange event; ``False`` when no session matched within ``wait``
        seconds (none: look once)."""
        if status is ExchangeStatus.PENDING:
            return True
        target = EXCHANGE_TO_STATE[status]

        async def move() -> bool:
            moved = await self.transition_by("exchange_id", exchange_id, target, error=detail)
            return moved is not None

        return await self._applied([("exchange_id", exchange_id)], move, wait)

    async def _applied(
        self, keys: list[tuple[str, str]], move: Callable[[], Awaitable[bool]], wait: float
    ) -> bool:
        """Apply an agent event with ``move()`` (its transition) to the session stored under
        one of ``keys``: ``True`` once it moved, or once the session is there and past the
        event (a repeated or late one); ``False`` if no session was stored within ``wait``
        seconds (the event waits for this worker to store it, looking again every
        ``EVENT_RECHECK`` seconds for another worker's)."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            # Watch before looking: a key this worker stores during the look ends the wait.
            with self.arrivals.watching(keys) as watch:
                if await move():
                    return True
                if await self._matches(keys):
                    await move()  # stored since the first try: it moves now, or it has moved on
                    return True
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return False
                await watch.stored(min(left, EVENT_RECHECK))

    async def _matches(self, keys: list[tuple[str, str]]) -> bool:
        """Whether a session is stored under any of these ``(column, value)`` keys."""
        async with self.db.session() as session:
            for column, value in keys:
                if await queries.exists(session, column, value):
                    return True
        return False

    async def invitation_url(self, public_id: str) -> str:
        """The agent's invitation URL behind a short id (``/i/<id>``) while the invitation can
        be used: the session is still ``invited`` and not expired (Aries RFC 0434 wants a short
        URL invalidated after an expiration time). ``NotFound`` otherwise."""
        url = None
        if is_public_id(public_id):  # no query for what no id can look like
            async with self.db.reading() as session:
                url = await queries.live_invitation(session, public_id, self.clock.now())
        if url is None:
            raise NotFound("This invitation is unknown or no longer valid.", code="no_invitation")
        return url

    # --- reconciliation and expiry -------------------------------------------------------

    async def reconcile(self, row: IssuanceSession) -> IssuanceSession | None:
        """Read the record state back from the agent; returns the updated row if it moved."""
        agent = self.agent
        if row.state == State.INVITED and row.invitation_url:
            invitation = Invitation(row.invitation_url, row.invitation_msg_id, row.connection_id)
            status = await agent.connection_status(invitation)
            if status.active and await self._connected("id", row.id, status.connection_id):
                return await self.get(row.id)
        elif row.state == State.OFFERED and row.exchange_id:
            exchange = await agent.exchange_state(row.exchange_id)
            target = EXCHANGE_TO_STATE.get(exchange.status)
            # REST agents report the state word even on success; only failures carry an error.
            error = None if target is State.ACCEPTED else exchange.detail
            if target and await self.transition(row.id, target, error=error):
                return await self.get(row.id)
        return None

    async def reconcile_stale(self, older_than: float, limit: int = 50) -> int:
        """Reconcile waiting sessions that heard nothing for ``older_than`` seconds."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            rows = await queries.stale(session, now - timedelta(seconds=older_than), limit)
            if rows:
                await queries.mark_checked(session, [r.id for r in rows], now)
        moved = 0
        for row in rows:
            try:
                moved += (await self.reconcile(row)) is not None
            except AgentUnavailable as exc:
                log.warning("reconcile skipped, agent unavailable: %s", exc)
                break
        return moved

    async def expire_due(self) -> int:
        """Expire active sessions past ``expires_at``; tells the agent about dropped offers."""
        async with self.db.session() as session:
            due = await queries.due(session, self.clock.now(), 500)
        for session_id, state, exchange_id in due:
            snapshot = await self.transition(session_id, State.EXPIRED, error="timeout")
            if snapshot and state == State.OFFERED and exchange_id and self._agent:
                try:
                    await self._agent.abandon(exchange_id, "offer expired")
                except AgentUnavailable:
                    log.info("could not tell the agent that %s expired", exchange_id)
        return len(due)

    async def sweep(self, stopping: asyncio.Event, *, interval: float) -> None:
        """Supervised loop: every ``interval`` seconds expire overdue sessions and reconcile
        ones whose webhooks may have been missed."""
        stale_after = max(3 * interval, 10.0)
        while True:
            try:
                await asyncio.wait_for(stopping.wait(), interval)
                return
            except TimeoutError:
                pass
            await self.expire_due()
            if self.agent_pushes_events:
                await self.reconcile_stale(stale_after)
