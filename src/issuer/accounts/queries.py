"""The accounts' SQL: small typed functions, session first, one statement each.

Ownership is part of the ``WHERE`` clause (a user ends only their own sessions); one-time
secrets are consumed by one conditional ``UPDATE`` whose row count decides (ASVS 11.5.1).

The statements of a login run for every login, so they are built once (Core, bound parameters:
compiled once and cached), and opening a login is one statement on PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, Text, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.identifiers import email_key, username_key
from issuer.accounts.models import LoginSession, OneTimeToken, User
from issuer.outbox.models import OutboxMessage

_users = cast(Table, User.__table__)
_logins = cast(Table, LoginSession.__table__)
_outbox = cast(Table, OutboxMessage.__table__)

# --- users -------------------------------------------------------------------------------

_USER_BY_LOGIN = (
    select(User)
    .where(or_(User.email_key == bindparam("email_key"), User.username_key == bindparam("name")))
    .limit(1)
)


async def user_by_login(session: AsyncSession, identifier: str) -> User | None:
    """The user whose email or username is ``identifier`` (normalised)."""
    keys = {"email_key": email_key(identifier), "name": username_key(identifier)}
    return await session.scalar(_USER_BY_LOGIN, keys)


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


@dataclass(frozen=True, slots=True)
class PasswordProof:
    """What a password login checks on the user's row when it is recorded: the hash just
    verified (``checked_hash``) is still the stored one — a password changed or reset meanwhile
    wins — and the account is active; ``new_hash`` (a rehash or an upgrade) then replaces it."""

    checked_hash: str | None
    new_hash: str | None = None


# A stored hash that is NULL (an account without a password) never matches.
_PROVEN = (
    _users.c.active.is_(True),
    _users.c.password_hash == bindparam("checked_hash", type_=Text),
)
_NEW_HASH = func.coalesce(bindparam("new_hash", type_=Text), _users.c.password_hash)
_CONFIRM_PASSWORD = (
    update(_users)
    .where(_users.c.id == bindparam("user_id"), *_PROVEN)
    .values(password_hash=_NEW_HASH)
)


async def confirm_password(session: AsyncSession, user_id: int, proof: PasswordProof) -> bool:
    """Lock in a password login: ``True`` if ``proof`` holds (storing its ``new_hash``, if
    any); ``False`` when the password changed meanwhile or the account was deactivated."""
    values = {"user_id": user_id, "checked_hash": proof.checked_hash, "new_hash": proof.new_hash}
    result = await session.execute(_CONFIRM_PASSWORD, values)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


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


# The columns of a new login session and of its event that the caller gives (the rest are the
# user's id, the event's number, and defaults).
LOGIN_COLUMNS = ("id", "kind", "user_agent", "ip", "created_at", "last_seen_at", "expires_at",
                 "refresh_jti")  # fmt: skip
EVENT_COLUMNS = ("event_id", "kind", "topic", "payload", "created_at", "available_at", "attempts")
# The user's last login and next event number; the increment takes the user's row lock until
# the end of the transaction, so the user's events commit in the order of their numbers.
_STAMP = (
    update(_users)
    .where(_users.c.id == bindparam("user_id"))
    .values(last_login_at=bindparam("now"), event_seq=_users.c.event_seq + 1)
    .returning(_users.c.id, _users.c.event_seq)
)
_STAMP_PROVEN = _STAMP.where(*_PROVEN).values(password_hash=_NEW_HASH)
_ADD_LOGIN = insert(_logins).values(
    user_id=bindparam("user_id"), **{c: bindparam(f"login_{c}") for c in LOGIN_COLUMNS}
)
_ADD_EVENT = insert(_outbox).values(
    user_id=bindparam("user_id"),
    seq=bindparam("seq"),
    **{c: bindparam(f"event_{c}") for c in EVENT_COLUMNS},
)


def _open_login_statement(stamp: Any) -> Any:
    """PostgreSQL: ``stamp``, the session row and the event row as one statement (a
    data-modifying ``WITH``); it returns the event's number, or no row when ``stamp`` matched
    none (then nothing was written)."""
    stamped = stamp.cte("stamped")

    def given(table: Table, prefix: str, columns: tuple[str, ...]) -> list[Any]:
        return [bindparam(f"{prefix}_{c}", type_=table.c[c].type) for c in columns]

    opened = (
        insert(_logins)
        .from_select(
            ["user_id", *LOGIN_COLUMNS],
            select(stamped.c.id, *given(_logins, "login", LOGIN_COLUMNS)),
        )
        .cte("opened")
    )
    return (
        insert(_outbox)
        .from_select(
            ["user_id", "seq", *EVENT_COLUMNS],
            select(stamped.c.id, stamped.c.event_seq, *given(_outbox, "event", EVENT_COLUMNS)),
        )
        .add_cte(opened)
        .returning(_outbox.c.seq)
    )


_OPEN_LOGIN = _open_login_statement(_STAMP)
_OPEN_PROVEN_LOGIN = _open_login_statement(_STAMP_PROVEN)


async def open_login(
    session: AsyncSession,
    user_id: int,
    now: datetime,
    login: dict[str, Any],
    event: dict[str, Any],
    proof: PasswordProof | None = None,
) -> int | None:
    """Record a login of ``user_id`` at ``now``: the session row (``login``: the values of
    :data:`LOGIN_COLUMNS`), the user's last login and the event (``event``: the outbox values of
    :data:`EVENT_COLUMNS`) with the user's next event number, which is returned. With ``proof``,
    only if it holds (then the new hash is stored too); ``None`` and nothing written otherwise.

    One statement on PostgreSQL; three in the caller's transaction elsewhere (SQLite)."""
    values: dict[str, Any] = {"user_id": user_id, "now": now}
    if proof is not None:
        values |= {"checked_hash": proof.checked_hash, "new_hash": proof.new_hash}
    values |= {f"login_{c}": login[c] for c in LOGIN_COLUMNS}
    values |= {f"event_{c}": event[c] for c in EVENT_COLUMNS}
    if session.get_bind().dialect.name == "postgresql":
        statement = _OPEN_LOGIN if proof is None else _OPEN_PROVEN_LOGIN
        return cast(int | None, await session.scalar(statement, values))
    stamped = (await session.execute(_STAMP if proof is None else _STAMP_PROVEN, values)).first()
    if stamped is None:
        return None
    seq = int(stamped.event_seq)
    await session.execute(_ADD_LOGIN, values)
    await session.execute(_ADD_EVENT, values | {"seq": seq})
    return seq


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
