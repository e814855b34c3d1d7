"""The identities' SQL: small typed functions, session first; ownership in the ``WHERE``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.models import User
from issuer.social.models import Identity


async def identity_by_subject(
    session: AsyncSession, provider: str, subject: str
) -> Identity | None:
    return await session.scalar(
        select(Identity).where(Identity.provider == provider, Identity.subject == subject)
    )


async def identities_of(session: AsyncSession, user_id: int) -> list[Identity]:
    rows = await session.scalars(
        select(Identity).where(Identity.user_id == user_id).order_by(Identity.created_at)
    )
    return list(rows)


async def add_identity(session: AsyncSession, identity: Identity) -> Identity:
    """Insert ``identity``; raises ``IntegrityError`` when ``(provider, subject)`` is taken."""
    session.add(identity)
    await session.flush()
    return identity


async def lock_user(session: AsyncSession, user_id: int) -> User | None:
    """The user, write-locked until the transaction ends: concurrent changes to one user's
    login methods run one after the other (a no-op ``UPDATE`` takes the row lock on
    PostgreSQL and the write lock on SQLite)."""
    await session.execute(update(User).where(User.id == user_id).values(id=User.id))
    return await session.get(User, user_id, populate_existing=True)


async def delete_own_identity(session: AsyncSession, user_id: int, entity_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Identity).where(Identity.user_id == user_id, Identity.entity_id == entity_id)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def remove_password(session: AsyncSession, user_id: int) -> None:
    await session.execute(update(User).where(User.id == user_id).values(password_hash=None))


async def stamp_identity(
    session: AsyncSession, identity_id: int, *, email: str | None, email_verified: bool,
    user_name: str | None, now: datetime,
) -> None:  # fmt: skip
    """What the provider says now (the email may have changed there), and the login time."""
    await session.execute(
        update(Identity)
        .where(Identity.id == identity_id)
        .values(email=email, email_verified=email_verified, user_name=user_name,
                last_login_at=now)
    )  # fmt: skip
