"""The issuance sessions' SQL: small typed functions, session first.

The hot path's statements are Core statements on the table, built once (building one costs more
than running it) and run with bind parameters, most as a unit of one statement
(``Database.statement``); the rows come back as detached ``IssuanceSession`` objects."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Executable,
    Table,
    Text,
    Update,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.db import detached
from issuer.issuance.models import TOPIC_PREFIX, IssuanceSession
from issuer.issuance.states import ACTIVE_STATES, ALLOWED_FROM, State
from issuer.realtime.broker import notification

TABLE = cast(Table, IssuanceSession.__table__)
BY_ID = select(TABLE).where(TABLE.c.id == bindparam("session_id"))
INSERT = insert(TABLE)


# Every column as None: what a new row holds where the insert names no value.
UNSET = dict.fromkeys(TABLE.c.keys())


async def add(session: AsyncSession, values: dict[str, Any]) -> IssuanceSession:
    """Store a new session; the stored row. ``values`` names every column that is not NULL
    (a JSON column given None would hold JSON ``null``, not SQL NULL)."""
    await session.execute(INSERT, values)
    return detached(IssuanceSession, {**UNSET, **values})


async def get(session: AsyncSession, session_id: str) -> IssuanceSession | None:
    found = (await session.execute(BY_ID, {"session_id": session_id})).first()
    return None if found is None else detached(IssuanceSession, found._mapping)


async def by_ids(session: AsyncSession, session_ids: list[str]) -> list[IssuanceSession]:
    rows = await session.scalars(select(IssuanceSession).where(IssuanceSession.id.in_(session_ids)))
    return list(rows)


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


async def transition_by(
    session: AsyncSession,
    column: str,
    value: str,
    target: State,
    now: datetime,
    fields: dict[str, Any],
    *,
    notify: bool,
) -> IssuanceSession | None:
    """Move the session whose ``column`` (``id``, ``invitation_msg_id``, ``connection_id``,
    ``exchange_id``) is ``value`` to ``target`` if its state is an allowed predecessor, in one
    statement (an agent event needs no lookup first); the new row, or ``None`` when no session
    there is in an allowed predecessor state (a duplicate or late event).

    ``notify``: the same statement publishes the new snapshot to the PostgreSQL broker
    (``issuer.realtime.broker.notification``), sent when it commits."""
    statement = _transition_statement(column, target, frozenset(fields), notify)
    parameters = {"match": value, "now": now, **{f"new_{k}": v for k, v in fields.items()}}
    if notify:
        parameters["now_iso"] = now.isoformat()
    found = (await session.execute(statement, parameters)).first()
    if found is None:
        return None
    values = dict(found._mapping)
    values.pop("notified", None)
    return detached(IssuanceSession, values)


@functools.cache
def _transition_statement(
    column: str, target: State, names: frozenset[str], notify: bool
) -> Executable:
    """The statement of :func:`transition_by` for one shape of call, built once: bind
    parameters ``match``, ``now``, ``new_<field>`` (and ``now_iso`` when it notifies)."""
    columns = TABLE.c
    values: dict[str, Any] = {
        "state": target.value,
        "updated_at": bindparam("now", type_=columns.updated_at.type),
        "version": columns.version + 1,
        **{name: bindparam(f"new_{name}", type_=columns[name].type) for name in sorted(names)},
    }
    if target.is_final:
        values["finished_at"] = bindparam("now", type_=columns.finished_at.type)
    moving: Update = (
        update(TABLE)
        .where(columns[column] == bindparam("match", type_=columns[column].type))
        .where(columns.state.in_(sorted(s.value for s in ALLOWED_FROM[target])))
        .values(values)
        .returning(*columns)
    )
    if not notify:
        return moving
    moved = moving.cte("moved")
    snapshot = func.json_build_object(  # IssuanceSession.snapshot(), in SQL
        literal_column("'id'"), moved.c.id,
        literal_column("'state'"), moved.c.state,
        literal_column("'version'"), moved.c.version,
        literal_column("'error'"), moved.c.error,
        literal_column("'updated_at'"), bindparam("now_iso", type_=Text),
    )  # fmt: skip
    topic = literal(TOPIC_PREFIX, Text) + moved.c.id
    return select(*moved.c, notification(topic, snapshot).label("notified"))


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
