"""Issuance logic: sessions, transitions, agent events, reconciliation and expiry.

Services take plain arguments and raise :class:`APIError`; only routes touch the request.
Every transition is one conditional ``UPDATE … WHERE state IN (allowed predecessors)
RETURNING``, so duplicate and out-of-order agent events are harmless, and its snapshot is
published through the broker in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import null, select, update

from issuer.db import Database, utcnow
from issuer.errors import APIError
from issuer.issuance.agents.base import Agent, AgentUnavailable, ExchangeStatus, Invitation
from issuer.issuance.broker import LocalBroker, Snapshot
from issuer.issuance.models import IssuanceSession
from issuer.issuance.states import ACTIVE_STATES, ALLOWED_FROM, State
from issuer.ops.metrics import TRANSITIONS
from issuer.outbox.service import enqueue_event

log = logging.getLogger(__name__)
EVENT_RETRY_DELAY = 0.25  # seconds between lookups of a record we have not stored yet
EVENT_RETRIES = 20

EXCHANGE_TO_STATE = {
    ExchangeStatus.ACCEPTED: State.ACCEPTED,
    ExchangeStatus.DECLINED: State.DECLINED,
    ExchangeStatus.FAILED: State.FAILED,
}


def agent_down() -> APIError:
    return APIError(
        503,
        "agent_unavailable",
        "The credential agent is not reachable right now. Please try again in a moment.",
        headers={"Retry-After": "5"},
    )


class IssuanceService:
    def __init__(
        self,
        db: Database,
        agent: Agent | None,
        broker: LocalBroker,
        *,
        offer_timeout: float,
        invitation_timeout: float,
    ) -> None:
        self.db = db
        self._agent = agent
        self.broker = broker
        self.wake_outbox: Callable[[], None] = lambda: None
        self.offer_timeout = timedelta(seconds=offer_timeout)
        self.invitation_timeout = timedelta(seconds=invitation_timeout)

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            raise APIError(503, "agent_not_configured", "No credential agent is configured.")
        return self._agent

    # --- reading -------------------------------------------------------------------------

    async def get(self, session_id: str) -> IssuanceSession | None:
        async with self.db.sessions() as session:
            return await session.get(IssuanceSession, session_id)

    async def snapshots(self, session_ids: list[str]) -> list[Snapshot]:
        if not session_ids:
            return []
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(IssuanceSession).where(IssuanceSession.id.in_(session_ids))
            )
            return [row.snapshot() for row in rows]

    async def resync(self, session_ids: list[str]) -> None:
        """Push the stored state of these sessions to local listeners (after a lost LISTEN)."""
        for snapshot in await self.snapshots(session_ids):
            self.broker.deliver(snapshot)

    # --- transitions ---------------------------------------------------------------------

    async def transition(self, session_id: str, target: State, **fields: Any) -> Snapshot | None:
        """Move a session to ``target`` if its current state allows it; ``None`` if not."""
        now = utcnow()
        values: dict[str, Any] = {"state": target, "updated_at": now, **fields}
        values["version"] = IssuanceSession.version + 1
        if target.is_final:
            values["finished_at"] = now
        statement = (
            update(IssuanceSession)
            .where(IssuanceSession.id == session_id)
            .where(IssuanceSession.state.in_([s.value for s in ALLOWED_FROM[target]]))
            .values(values)
            .returning(IssuanceSession)
            .execution_options(synchronize_session=False)
        )
        async with self.db.transaction() as session:
            row = (await session.execute(statement)).scalar_one_or_none()
            if row is None:
                return None
            snapshot = row.snapshot()
            if target is State.ACCEPTED:
                enqueue_event(
                    session,
                    "credential.accepted",
                    {
                        "session_id": row.id,
                        "exchange_id": row.exchange_id,
                        "language": row.language,
                    },
                )
            await self.broker.stage(session, snapshot)
        self.broker.committed(snapshot)
        if target is State.ACCEPTED:
            self.wake_outbox()
        TRANSITIONS.labels(target.value).inc()
        log.info("issuance %s… → %s", session_id[:8], target)
        return snapshot

    # --- the flow ------------------------------------------------------------------------

    async def start(self, language: str) -> tuple[IssuanceSession, Invitation]:
        """Create the session row and the agent's invitation concurrently."""
        agent = self.agent
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        row = IssuanceSession(
            id=session_id,
            state=State.INVITED,
            language=language,
            created_at=now,
            updated_at=now,
            expires_at=now + self.invitation_timeout,
        )

        async def insert() -> None:
            async with self.db.transaction() as session:
                session.add(row)

        inserted, invitation = await asyncio.gather(
            insert(), agent.create_invitation(), return_exceptions=True
        )
        if isinstance(inserted, BaseException):
            raise inserted
        if isinstance(invitation, BaseException):
            await self.transition(session_id, State.FAILED, error="agent_unavailable")
            if isinstance(invitation, AgentUnavailable):
                log.warning("invitation failed: %s", invitation)
                raise agent_down()
            raise invitation
        async with self.db.transaction() as session:
            await session.execute(
                update(IssuanceSession)
                .where(IssuanceSession.id == session_id)
                .values(
                    invitation_url=invitation.url,
                    invitation_msg_id=invitation.invitation_msg_id,
                    connection_id=invitation.connection_id,
                )
            )
        row.invitation_url = invitation.url
        return row, invitation

    async def offer(self, session_id: str, attributes: dict[str, str]) -> Snapshot:
        """Send the credential offer for a connected session; 409 unless it is connected."""
        row = await self.get(session_id)
        if row is None:
            raise APIError(404, "not_found", "No such issuance session.")
        if row.state == State.INVITED:
            try:
                row = await self.reconcile(row) or row
            except AgentUnavailable as exc:
                log.warning("connection check failed: %s", exc)
                raise agent_down() from exc
        if row.state != State.CONNECTED or row.connection_id is None:
            raise APIError(409, "not_connected", f"The session is {row.state}, not connected.")
        # Claim the offer atomically so a double submit sends one offer, not two.
        async with self.db.transaction() as session:
            claimed = await session.execute(
                update(IssuanceSession)
                .where(IssuanceSession.id == session_id)
                .where(IssuanceSession.state == State.CONNECTED)
                .where(IssuanceSession.attributes.is_(None))
                .values(attributes=attributes)
            )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise APIError(409, "offer_in_progress", "A credential offer is already on its way.")
        try:
            exchange_id = await self.agent.send_offer(row.connection_id, attributes)
        except AgentUnavailable as exc:
            async with self.db.transaction() as session:
                await session.execute(
                    update(IssuanceSession)
                    .where(IssuanceSession.id == session_id)
                    .values(attributes=null())  # SQL NULL; None would store JSON 'null'
                )
            log.warning("offer failed: %s", exc)
            raise agent_down() from exc
        now = utcnow()
        snapshot = await self.transition(
            session_id,
            State.OFFERED,
            exchange_id=exchange_id,
            offered_at=now,
            expires_at=now + self.offer_timeout,
        )
        if snapshot is None:  # expired or failed while the agent was answering
            current = await self.get(session_id)
            raise APIError(409, "session_over", f"The session is {current and current.state}.")
        return snapshot

    # --- agent events --------------------------------------------------------------------
    # Webhooks can overtake the HTTP answer that created their record (ACA-Py sends
    # ``offer-sent`` a few ms before ``send-offer`` returns), so an event for a record we have
    # not stored yet is retried for a short while before it is left to reconciliation.

    async def connection_active(
        self, *, connection_id: str | None, invitation_msg_id: str | None, attempts: int = 1
    ) -> bool:
        """Apply an ``active`` connection event; ``False`` when no session matched (yet)."""
        for attempt in range(attempts):
            row = await self._find(invitation_msg_id=invitation_msg_id, connection_id=connection_id)
            if row is not None:
                await self._connected(row, connection_id or row.connection_id)
                return True
            if attempt + 1 < attempts:
                await asyncio.sleep(EVENT_RETRY_DELAY)
        return False

    async def _connected(self, row: IssuanceSession, connection_id: str | None) -> Snapshot | None:
        now = utcnow()
        return await self.transition(
            row.id,
            State.CONNECTED,
            connection_id=connection_id,
            connected_at=now,
            expires_at=now + self.invitation_timeout,
        )

    async def exchange_finished(
        self, exchange_id: str, status: ExchangeStatus, detail: str | None = None, attempts: int = 1
    ) -> bool:
        """Apply a final exchange event; ``False`` when no session matched (yet)."""
        if status is ExchangeStatus.PENDING:
            return True
        for attempt in range(attempts):
            row = await self._find(exchange_id=exchange_id)
            if row is not None:
                await self.transition(row.id, EXCHANGE_TO_STATE[status], error=detail)
                return True
            if attempt + 1 < attempts:
                await asyncio.sleep(EVENT_RETRY_DELAY)
        return False

    async def _find(self, **keys: str | None) -> IssuanceSession | None:
        conditions = [getattr(IssuanceSession, k) == v for k, v in keys.items() if v]
        if not conditions:
            return None
        async with self.db.sessions() as session:
            for condition in conditions:
                row = await session.scalar(select(IssuanceSession).where(condition).limit(1))
                if row is not None:
                    return row
        return None

    # --- reconciliation and expiry -------------------------------------------------------

    async def reconcile(self, row: IssuanceSession) -> IssuanceSession | None:
        """Read the record state back from the agent; returns the updated row if it moved."""
        agent = self.agent
        if row.state == State.INVITED and row.invitation_url:
            invitation = Invitation(row.invitation_url, row.invitation_msg_id, row.connection_id)
            status = await agent.connection_status(invitation)
            if status.active and await self._connected(row, status.connection_id):
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
        """Reconcile active sessions that heard nothing for ``older_than`` seconds."""
        cutoff = utcnow() - timedelta(seconds=older_than)
        async with self.db.sessions() as session:
            rows = list(
                await session.scalars(
                    select(IssuanceSession)
                    .where(IssuanceSession.state.in_([State.INVITED, State.OFFERED]))
                    .where(IssuanceSession.updated_at < cutoff)
                    .where(
                        (IssuanceSession.checked_at.is_(None))
                        | (IssuanceSession.checked_at < cutoff)
                    )
                    .order_by(IssuanceSession.updated_at)
                    .limit(limit)
                )
            )
            if rows:
                await session.execute(
                    update(IssuanceSession)
                    .where(IssuanceSession.id.in_([r.id for r in rows]))
                    .values(checked_at=utcnow())
                )
                await session.commit()
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
        now = utcnow()
        async with self.db.sessions() as session:
            due = list(
                await session.execute(
                    select(IssuanceSession.id, IssuanceSession.state, IssuanceSession.exchange_id)
                    .where(IssuanceSession.state.in_([s.value for s in ACTIVE_STATES]))
                    .where(IssuanceSession.expires_at < now)
                    .limit(500)
                )
            )
        for session_id, state, exchange_id in due:
            snapshot = await self.transition(session_id, State.EXPIRED, error="timeout")
            if snapshot and state == State.OFFERED and exchange_id and self._agent:
                try:
                    await self._agent.abandon(exchange_id, "offer expired")
                except AgentUnavailable:
                    log.info("could not tell the agent that %s expired", exchange_id)
        return len(due)
