"""The idempotency keys' SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.idempotency.models import IdempotencyRecord


async def add(session: AsyncSession, record: IdempotencyRecord) -> None:
    """Insert ``record``; raises ``IntegrityError`` when the caller already used the key."""
    session.add(record)
    await session.flush()


async def find(session: AsyncSession, caller: str, key: str) -> IdempotencyRecord | None:
    return await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
        )
    )


async def take_over(
    session: AsyncSession, record_id: int, *, stale_before: datetime, fingerprint: str,
    now: datetime,
) -> bool:  # fmt: skip
    """Claim a record whose first request never finished (or that expired); ``False`` if
    someone else got it first."""
    result = await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.created_at < stale_before)
        .values(fingerprint=fingerprint, status=None, headers=None, body=None, created_at=now,
                completed_at=None)
    )  # fmt: skip
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def complete(
    session: AsyncSession, caller: str, key: str, *, status: int, headers: dict[str, Any],
    body: bytes, now: datetime,
) -> None:  # fmt: skip
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.caller == caller, IdempotencyRecord.key == key)
        .values(status=status, headers=headers, body=body, completed_at=now)
    )


async def release(session: AsyncSession, caller: str, key: str) -> None:
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.caller == caller,
            IdempotencyRecord.key == key,
            IdempotencyRecord.status.is_(None),
        )
    )


async def purge(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
