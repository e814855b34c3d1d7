"""The accounts' SQL: small typed functions, session first, one statement each.

Ownership is part of the ``WHERE`` clause (a user ends only their own sessions); one-time
secrets are consumed by one conditional ``UPDATE`` whose row count decides (ASVS 11.5.1).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.identifiers import email_key, username_key
from issuer.accounts.models import LoginSession, OneTimeToken, User

# --- users -------------------------------------------------------------------------------


async def user_by_login(session: AsyncSession, identifier: str) -> User | None:
    """The user whose email or username is ``identifier`` (normalised)."""
    return await session.scalar(
        select(User)
        .where(
            or_(
                User.email_key == email_key(identifier),
                User.username_key == username_key(identifier),
            )
        )
        .limit(1)
    )


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email_key == email_key(email)))


async def user_by_username(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username_key == username_key(username)))


async def user_by_entity(session: AsyncSession, entity_id: uuid.UUID) -> User | None:
    """The user whose public id (``entity_id``) this is."""
    return await session.scalar(select(User).where(User.entity_id == entity_id))


async def add_user(session: AsyncSession, user: User) -> User:
    """Insert ``user``; raises ``IntegrityError`` when its email or username is taken."""
    session.add(user)
    await session.flush()
    return user


async def confirm_password(
    session: AsyncSession, user_id: int, *, checked_hash: str | None, new_hash: str | None
) -> bool:
    """Lock in a password login: ``True`` if the stored hash is still the one just verified
    (storing ``new_hash``, an upgrade, if given); ``False`` when it changed meanwhile (the
    password was reset or changed) or the account was deactivated."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.active.is_(True))
        .where(User.password_hash == checked_hash)
        .values(password_hash=new_hash if new_hash is not None else User.password_hash)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def stamp_login(session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(update(User).where(User.id == user_id).values(last_login_at=now))


async def replace_password_hash(
    session: AsyncSession, user_id: int, *, old_hash: str | None, new_hash: str
) -> bool:
    """Set ``new_hash`` if the stored hash is still ``old_hash`` (no lost concurrent change)."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.password_hash == old_hash)
        .values(password_hash=new_hash)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def set_password_hash(session: AsyncSession, user_id: int, new_hash: str) -> None:
    await session.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))


# --- login sessions ----------------------------------------------------------------------


async def principal_rows(session: AsyncSession, sid: str) -> tuple[User, LoginSession] | None:
    """The login session ``sid`` and its user."""
    found = (
        await session.execute(
            select(User, LoginSession)
            .join(LoginSession, LoginSession.user_id == User.id)
            .where(LoginSession.id == sid)
        )
    ).first()
    return None if found is None else (found[0], found[1])


async def touch_session(session: AsyncSession, sid: str, now: datetime) -> None:
    await session.execute(
        update(LoginSession).where(LoginSession.id == sid).values(last_seen_at=now)
    )


async def revoke_session(session: AsyncSession, sid: str, reason: str, now: datetime) -> bool:
    result = await session.execute(
        update(LoginSession)
        .where(LoginSession.id == sid, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def revoke_user_sessions(
    session: AsyncSession, user_id: int, reason: str, now: datetime, *, keep: str | None = None
) -> list[str]:
    """End every active session of the user but ``keep``; the ids of those that ended."""
    statement = (
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    if keep is not None:
        statement = statement.where(LoginSession.id != keep)
    return list(await session.scalars(statement.returning(LoginSession.id)))


async def end_own_session(session: AsyncSession, user_id: int, sid: str, now: datetime) -> bool:
    """End session ``sid`` if it is one of ``user_id``'s and still active."""
    result = await session.execute(
        update(LoginSession)
        .where(LoginSession.id == sid, LoginSession.user_id == user_id)
        .where(LoginSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="ended_by_user")
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def active_sessions(
    session: AsyncSession, user_id: int, now: datetime, idle_timeout: timedelta
) -> list[LoginSession]:
    rows = await session.scalars(
        select(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .where(LoginSession.expires_at > now)
        .where(LoginSession.last_seen_at > now - idle_timeout)
        .order_by(LoginSession.created_at.desc())
    )
    return list(rows)


async def rotate_refresh_token(
    session: AsyncSession, sid: str, jti: str, *, new_jti: str, now: datetime,
    grace_start: datetime,
) -> str | None:  # fmt: skip
    """Rotate the refresh token ``jti`` of ``sid``; returns the now current jti, or ``None``
    when ``jti`` is neither current nor the previous one within the grace window (a replay).

    The immediately previous token (the other tab of a concurrent refresh) gets the current
    one again rather than a new branch: a forked chain would make the next refresh of either
    tab look like a replay and end the login (ASVS 10.4.5).
    """
    is_current = LoginSession.refresh_jti == jti
    rotated = await session.execute(
        update(LoginSession)
        .where(LoginSession.id == sid, LoginSession.revoked_at.is_(None))
        .where(
            or_(
                is_current,
                and_(
                    LoginSession.previous_refresh_jti == jti,
                    LoginSession.rotated_at > grace_start,
                ),
            )
        )
        .values(
            previous_refresh_jti=case(
                (is_current, LoginSession.refresh_jti), else_=LoginSession.previous_refresh_jti
            ),
            refresh_jti=case((is_current, new_jti), else_=LoginSession.refresh_jti),
            rotated_at=case((is_current, now), else_=LoginSession.rotated_at),
            last_seen_at=now,
        )
        .returning(LoginSession.refresh_jti)
        .execution_options(synchronize_session=False)
    )
    return rotated.scalar_one_or_none()


# --- one-time tokens ---------------------------------------------------------------------


async def consume_one_time_token(
    session: AsyncSession, token_hash: str, purpose: str, now: datetime
) -> int | None:
    """Mark the unexpired, unused token used; its user id, or ``None`` (exactly once)."""
    return await session.scalar(
        update(OneTimeToken)
        .where(OneTimeToken.token_hash == token_hash, OneTimeToken.purpose == purpose)
        .where(OneTimeToken.used_at.is_(None), OneTimeToken.expires_at > now)
        .values(used_at=now)
        .returning(OneTimeToken.user_id)
    )


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)
