"""The issuance sessions' SQL: small typed functions, session first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.issuance.models import IssuanceSession
from issuer.issuance.states import ACTIVE_STATES, ALLOWED_FROM, State


async def get(session: AsyncSession, session_id: str) -> IssuanceSession | None:
    return await session.get(IssuanceSession, session_id)


async def by_ids(session: AsyncSession, session_ids: list[str]) -> list[IssuanceSession]:
    rows = await session.scalars(select(IssuanceSession).where(IssuanceSession.id.in_(session_ids)))
    return list(rows)


async def find_by(session: AsyncSession, **keys: str | None) -> IssuanceSession | None:
    """The session whose ``invitation_msg_id``, ``connection_id`` or ``exchange_id`` is the one
    given (the first key that matches, in the order given)."""
    for column, value in keys.items():
        if value:
            row = await session.scalar(
                select(IssuanceSession).where(getattr(IssuanceSession, column) == value).limit(1)
            )
            if row is not None:
                return row
    return None


async def transition(
    session: AsyncSession, session_id: str, target: State, now: datetime, fields: dict[str, Any]
) -> IssuanceSession | None:
    """Move the session to ``target`` if its state is an allowed predecessor; the new row, or
    ``None`` when the state did not allow it (a duplicate or late event)."""
    values: dict[str, Any] = {
        "state": target,
        "updated_at": now,
        "version": IssuanceSession.version + 1,
        **fields,
    }
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
    return (await session.execute(statement)).scalar_one_or_none()


async def claim_offer(session: AsyncSession, session_id: str, attributes: dict[str, str]) -> bool:
    """Record the holder's attributes on a connected session that has none yet (so a double
    submit sends one offer); ``False`` if another submit got there first."""
    result = await session.execute(
        update(IssuanceSession)
        .where(IssuanceSession.id == session_id)
        .where(IssuanceSession.state == State.CONNECTED)
        .where(IssuanceSession.attributes.is_(None))
        .values(attributes=attributes)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release_offer(session: AsyncSession, session_id: str) -> None:
    await session.execute(
        update(IssuanceSession)
        .where(IssuanceSession.id == session_id)
        .values(attributes=null())  # SQL NULL; None would store JSON 'null'
    )


async def stale(session: AsyncSession, cutoff: datetime, limit: int) -> list[IssuanceSession]:
    """Waiting sessions that heard nothing since ``cutoff`` and were not read back since."""
    rows = await session.scalars(
        select(IssuanceSession)
        .where(IssuanceSession.state.in_([State.INVITED, State.OFFERED]))
        .where(IssuanceSession.updated_at < cutoff)
        .where((IssuanceSession.checked_at.is_(None)) | (IssuanceSession.checked_at < cutoff))
        .order_by(IssuanceSession.updated_at)
        .limit(limit)
    )
    return list(rows)


async def mark_checked(session: AsyncSession, session_ids: list[str], now: datetime) -> None:
    await session.execute(
        update(IssuanceSession).where(IssuanceSession.id.in_(session_ids)).values(checked_at=now)
    )


async def due(
    session: AsyncSession, now: datetime, limit: int
) -> list[tuple[str, str, str | None]]:
    """``(id, state, exchange_id)`` of active sessions past their ``expires_at``."""
    rows = await session.execute(
        select(IssuanceSession.id, IssuanceSession.state, IssuanceSession.exchange_id)
        .where(IssuanceSession.state.in_([s.value for s in ACTIVE_STATES]))
        .where(IssuanceSession.expires_at < now)
        .limit(limit)
    )
    return [(r[0], r[1], r[2]) for r in rows]
