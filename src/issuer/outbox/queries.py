"""The outbox's SQL: claim a batch under a lease, mark messages sent, failed or rescheduled.

The dispatcher's statements run for every delivered message, so they are built once here (Core,
with bound parameters: compiled once, cached) rather than per call. On PostgreSQL, marking a
batch sent and claiming the next one are one statement (a data-modifying ``WITH``), run on its
own as its own transaction: one round trip where there were two transactions of three.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    all_,
    any_,
    bindparam,
    func,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.outbox.models import OutboxMessage

_outbox = cast(Table, OutboxMessage.__table__)
_c = _outbox.c
_SENT = bindparam("sent", type_=ARRAY(Integer))  # PostgreSQL: the ids as one array parameter
_DUE = (
    select(_c.id)
    .where(_c.sent_at.is_(None), _c.failed_at.is_(None), _c.available_at <= bindparam("now"))
    .where(or_(_c.locked_until.is_(None), _c.locked_until < bindparam("now")))
    .order_by(_c.id)
    .limit(bindparam("limit", type_=Integer))
)


def _leasing(due: Any) -> Any:
    """Lease the ``due`` rows (a new attempt each), returning whole rows as ORM objects."""
    return (
        update(_outbox)
        .where(_c.id.in_(due.scalar_subquery()))
        .values(locked_until=bindparam("lease_until"), attempts=_c.attempts + 1)
        .returning(*_outbox.c)
    )


_CLAIM = select(OutboxMessage).from_statement(_leasing(_DUE))
# A delivered message: sent now, its lease released.
_DELIVERED = {"sent_at": bindparam("now"), "locked_until": null(), "last_error": null()}
_MARK_SENT = update(_outbox).where(_c.id.in_(bindparam("ids", expanding=True))).values(_DELIVERED)
# PostgreSQL: mark ``sent`` and claim the next batch in one statement. Both parts see the same
# snapshot, in which the rows being marked are still leased, so not due; they are left out by
# id as well, should their lease have run out meanwhile (a row updated twice in one statement).
_SETTLE_AND_CLAIM = select(OutboxMessage).from_statement(
    _leasing(_DUE.where(_c.id != all_(_SENT)).with_for_update(skip_locked=True)).add_cte(
        update(_outbox).where(_c.id == any_(_SENT)).values(_DELIVERED).cte("sent")
    )
)


async def claim(
    session: AsyncSession,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    skip_locked: bool,
    sent: Sequence[int] = (),
) -> list[OutboxMessage]:
    """Mark the messages ``sent`` (ids) delivered, then lease up to ``limit`` due messages,
    oldest first. ``skip_locked`` (PostgreSQL) lets several dispatchers claim at once without
    waiting for each other's rows; there, both are one statement."""
    values = {"now": now, "lease_until": lease_until, "limit": limit}
    if skip_locked:
        return list(await session.scalars(_SETTLE_AND_CLAIM, values | {"sent": list(sent)}))
    if sent:
        await mark_sent(session, sent, now)
    return list(await session.scalars(_CLAIM, values))


async def count_pending(session: AsyncSession, now: datetime) -> int:
    """Messages not yet sent nor given up on that are due now, leased or not."""
    pending = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
        .where(OutboxMessage.available_at <= now)
    )
    return int(await session.scalar(pending) or 0)


async def backlog(session: AsyncSession) -> list[tuple[str, bool, int, datetime | None]]:
    """The messages not sent, grouped by kind and by whether they were given up on:
    ``(kind, failed, count, oldest created_at)`` rows (one query, for the metrics)."""
    failed = OutboxMessage.failed_at.is_not(None)
    rows = await session.execute(
        select(OutboxMessage.kind, failed, func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.sent_at.is_(None))
        .group_by(OutboxMessage.kind, failed)
    )
    return [(kind, bool(dead), int(count), first) for kind, dead, count, first in rows]


async def mark_sent(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    """Mark the messages ``ids`` delivered (and their leases released)."""
    await session.execute(_MARK_SENT, {"ids": list(ids), "now": now})


async def mark_attempt_failed(
    session: AsyncSession, message_id: int, values: dict[str, Any]
) -> None:
    """Release the lease with the error, and either a new ``available_at`` or ``failed_at``."""
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(values)
    )


async def latest(session: AsyncSession, kind: str, limit: int) -> list[OutboxMessage]:
    """The newest ``limit`` messages of ``kind``, newest first."""
    rows = await session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.kind == kind)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return list(rows)


async def next_event_seq(session: AsyncSession, user_id: int) -> int:
    """The user's next entity-event number (``users.event_seq`` + 1, stored)."""
    found = await session.scalar(
        text("UPDATE users SET event_seq = event_seq + 1 WHERE id = :id RETURNING event_seq"),
        {"id": user_id},
    )
    if found is None:
        raise LookupError(f"no user {user_id} to number an event of")
    return int(found)


async def lock_user_events(session: AsyncSession, user_id: int) -> None:
    """Take the user's row lock first, in a transaction that will lock other rows (sessions)
    before numbering an event: every such transaction then locks in the same order (user,
    then the rest), so two of them never deadlock."""
    await session.execute(
        text("UPDATE users SET event_seq = event_seq WHERE id = :id"), {"id": user_id}
    )


async def user_events_since(
    session: AsyncSession,
    user_id: int,
    since: int,
    *,
    topics: list[str],
    after: datetime,
    limit: int,
) -> list[OutboxMessage]:
    """The user's entity events of ``topics`` numbered above ``since``, written after
    ``after``, oldest first, at most ``limit``."""
    rows = await session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.user_id == user_id,
            OutboxMessage.seq > since,
            OutboxMessage.created_at > after,
            OutboxMessage.topic.in_(topics),
        )
        .order_by(OutboxMessage.seq)
        .limit(limit)
    )
    return list(rows)
