"""The outbox's SQL: claim a batch under a lease, mark a message sent, failed or rescheduled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.outbox.models import OutboxMessage


def _due(now: datetime) -> Any:
    return (
        select(OutboxMessage.id)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
        .where(OutboxMessage.available_at <= now)
        .where(or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now))
    )


async def claim(
    session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int, skip_locked: bool
) -> list[OutboxMessage]:
    """Lease up to ``limit`` due messages, oldest first; ``skip_locked`` (PostgreSQL) lets
    several dispatchers claim at once without waiting for each other's rows."""
    due = _due(now).order_by(OutboxMessage.id).limit(limit)
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    rows = await session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(locked_until=lease_until, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    return list(rows)


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


async def mark_sent(session: AsyncSession, message_id: int, now: datetime) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(sent_at=now, locked_until=None, last_error=None)
    )


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
