"""The issuance sessions' SQL: small typed functions, session first."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.issuance.models import IssuanceSession
from issuer.issuance.states import ACTIVE_STATES, ALLOWED_FROM, State


async def get(session: AsyncSession, session_id: str) -> IssuanceSession | None:
    return await session.get(IssuanceSession, session_id)


async def by_ids(session: AsyncSession, session_ids: list[str]) -> list[IssuanceSession]:
    rows = await session.scalars(select(IssuanceSession).where(IssuanceSession.id.in_(session_ids)))
    return list(rows)


# The hot path's statements are Core statements on the table (no ORM statement processing),
# built once (building one costs more than running it) and run with bind parameters.
TABLE = cast(Table, IssuanceSession.__table__)
LIVE_INVITATION = (
    select(TABLE.c.invitation_url)
    .where(TABLE.c.invitation_public_id == bindparam("public_id"))
    .where(TABLE.c.state == State.INVITED.value)
    .where(TABLE.c.expires_at > bindparam("now"))
)
CLAIM_OFFER = (
    update(TABLE)
    .where(TABLE.c.id == bindparam("session_id"))
    .where(TABLE.c.state == State.CONNECTED.value)
    .where(TABLE.c.connection_id.is_not(None))
    .where(TABLE.c.attributes.is_(None))
    .values(attributes=bindparam("attributes", type_=TABLE.c.attributes.type))
    .returning(TABLE.c.connection_id)
)


async def live_invitation(session: AsyncSession, public_id: str, now: datetime) -> str | None:
    """The agent's invitation URL behind a short id while the invitation can still be used
    (the session is ``invited`` and not past ``expires_at``); ``None`` otherwise."""
    url: str | None = await session.scalar(LIVE_INVITATION, {"public_id": public_id, "now": now})
    return url


async def exists(session: AsyncSession, column: str, value: str) -> bool:
    """Whether a session has ``value`` in ``column`` (``invitation_msg_id``, ``connection_id``,
    ``exchange_id``)."""
    found = await session.scalar(
        select(IssuanceSession.id).where(getattr(IssuanceSession, column) == value).limit(1)
    )
    return found is not None


async def transition(
    session: AsyncSession, session_id: str, target: State, now: datetime, fields: dict[str, Any]
) -> IssuanceSession | None:
    """Move the session to ``target`` if its state is an allowed predecessor; the new row, or
    ``None`` when the state did not allow it (a duplicate or late event)."""
    return await transition_by(session, "id", session_id, target, now, fields)


async def transition_by(
    session: AsyncSession,
    column: str,
    value: str,
    target: State,
    now: datetime,
    fields: dict[str, Any],
) -> IssuanceSession | None:
    """:func:`transition` of the session whose ``column`` (``id``, ``invitation_msg_id``,
    ``connection_id``, ``exchange_id``) is ``value``, in one statement (an agent event needs
    no lookup first); ``None`` when no session there is in an allowed predecessor state."""
    statement = _transition_statement(column, target, frozenset(fields))
    parameters = {"match": value, "now": now, **{f"new_{k}": v for k, v in fields.items()}}
    row = (await session.execute(statement, parameters)).one_or_none()
    # A detached copy of the updated row (the session's identity map is not involved).
    return None if row is None else IssuanceSession(**row._mapping)


@functools.cache
def _transition_statement(column: str, target: State, names: frozenset[str]) -> Update:
    """The ``UPDATE … RETURNING`` of :func:`transition_by` for one shape of call, built once
    (building it costs more than running it): bind parameters ``match``, ``now`` and
    ``new_<field>``."""
    columns = TABLE.c
    values: dict[str, Any] = {
        "state": target.value,
        "updated_at": bindparam("now", type_=columns.updated_at.type),
        "version": columns.version + 1,
        **{name: bindparam(f"new_{name}", type_=columns[name].type) for name in sorted(names)},
    }
    if target.is_final:
        values["finished_at"] = bindparam("now", type_=columns.finished_at.type)
    return (
        update(TABLE)
        .where(columns[column] == bindparam("match", type_=columns[column].type))
        .where(columns.state.in_(sorted(s.value for s in ALLOWED_FROM[target])))
        .values(values)
        .returning(*columns)
    )


async def claim_offer(
    session: AsyncSession, session_id: str, attributes: dict[str, str]
) -> str | None:
    """Record the holder's attributes on a connected session that has none yet (so a double
    submit sends one offer); its connection id, or ``None`` if the session is not connected or
    another submit got there first."""
    parameters = {"session_id": session_id, "attributes": attributes}
    claimed: str | None = await session.scalar(CLAIM_OFFER, parameters)
    return claimed


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
