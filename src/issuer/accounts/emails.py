"""Email verification, password reset and change notices, written to the outbox.

Tokens: 256 bits from ``secrets``, stored as SHA-256 with a purpose, single use (consumed by one
conditional ``UPDATE``), expiring (verification 1 h, reset 30 min by default). Links are built
from the configured public base URL, never from the request's ``Host``. Forgot-password and
resend answer the same whether or not the email is known (ASVS 6.3.8); a reset ends every
session of the user (7.4.3) and does not log them in, so it cannot bypass MFA (6.4.3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.identifiers import email_key
from issuer.accounts.models import LoginSession, OneTimeToken, User
from issuer.db import Database, utcnow
from issuer.errors import APIError
from issuer.lib.passwords import password_problem
from issuer.outbox.service import enqueue_email, enqueue_event

VERIFY = "verify_email"
RESET = "reset_password"
INVALID_VERIFY = "The confirmation link is invalid or has expired."
INVALID_RESET = "Reset Password token has expired"


def uidb64(user: User) -> str:
    return base64.urlsafe_b64encode(user.entity_id.hex.encode()).rstrip(b"=").decode()


def entity_from_uidb64(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_event(user: User) -> dict[str, object]:
    return {"entity_id": user.entity_id.hex, "email": user.email, "username": user.username}


class AccountEmails:
    def __init__(
        self,
        db: Database,
        *,
        base_url: str,
        verify_ttl: int,
        reset_ttl: int,
        wake: Callable[[], None],
    ) -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")
        self.verify_ttl = timedelta(seconds=verify_ttl)
        self.reset_ttl = timedelta(seconds=reset_ttl)
        self.wake = wake

    async def _token(self, session: AsyncSession, user: User, purpose: str) -> str:
        token = secrets.token_urlsafe(32)
        ttl = self.verify_ttl if purpose == VERIFY else self.reset_ttl
        session.add(
            OneTimeToken(
                user_id=user.id,
                purpose=purpose,
                token_hash=digest(token),
                created_at=utcnow(),
                expires_at=utcnow() + ttl,
            )
        )
        return token

    async def _verification(self, session: AsyncSession, user: User) -> None:
        token = await self._token(session, user, VERIFY)
        enqueue_email(
            session,
            VERIFY,
            to=str(user.email),
            language=user.language,
            context={
                "name": user.first_name,
                "link": f"{self.base_url}/verify/{token}/{uidb64(user)}",
                "hours": max(1, int(self.verify_ttl.total_seconds() // 3600)),
            },
        )

    # --- hooks run inside the transaction of the change ----------------------------------

    async def created(self, session: AsyncSession, user: User) -> None:
        enqueue_event(session, "user.created", user_event(user))
        if user.email:
            await self._verification(session, user)

    async def password_changed(self, session: AsyncSession, user: User) -> None:
        enqueue_event(session, "password.changed", user_event(user))
        if user.email:
            enqueue_email(
                session,
                "password_changed",
                to=user.email,
                language=user.language,
                context={
                    "when": utcnow().strftime("%Y-%m-%d %H:%M"),
                    "link": f"{self.base_url}/forgot_password",
                },
            )

    # --- flows ---------------------------------------------------------------------------

    async def _user_by_email(self, session: AsyncSession, email: str) -> User | None:
        return await session.scalar(select(User).where(User.email_key == email_key(email)))

    async def signup_taken(self, email: str) -> None:
        """Someone signed up with a known email: tell its owner (the answer stays the same)."""
        async with self.db.transaction() as session:
            user = await self._user_by_email(session, email)
            if user is not None and user.email:
                enqueue_email(
                    session,
                    "account_exists",
                    to=user.email,
                    language=user.language,
                    context={"link": f"{self.base_url}/forgot_password"},
                )
        self.wake()

    async def resend(self, email: str) -> None:
        async with self.db.transaction() as session:
            user = await self._user_by_email(session, email)
            if user is not None and user.active and not user.verified:
                await self._verification(session, user)
        self.wake()

    async def forgot(self, email: str) -> None:
        async with self.db.transaction() as session:
            user = await self._user_by_email(session, email)
            if user is not None and user.active and user.email:
                token = await self._token(session, user, RESET)
                enqueue_email(
                    session,
                    RESET,
                    to=user.email,
                    language=user.language,
                    context={
                        "link": f"{self.base_url}/reset_password/{token}/{uidb64(user)}",
                        "minutes": max(1, int(self.reset_ttl.total_seconds() // 60)),
                    },
                )
        self.wake()

    async def _consume(
        self, session: AsyncSession, token: str, purpose: str, uid: str
    ) -> User | None:
        entity_id = entity_from_uidb64(uid)
        if entity_id is None or len(token) > 200:
            return None
        used = await session.scalar(
            update(OneTimeToken)
            .where(OneTimeToken.token_hash == digest(token), OneTimeToken.purpose == purpose)
            .where(OneTimeToken.used_at.is_(None), OneTimeToken.expires_at > utcnow())
            .values(used_at=utcnow())
            .returning(OneTimeToken.user_id)
        )
        if used is None:
            return None
        user = await session.get(User, used)
        return user if user is not None and user.entity_id == entity_id else None

    async def verify(self, token: str, uid: str) -> User:
        """Mark the email verified; 400 with 004's message when the link is not valid."""
        async with self.db.transaction() as session:
            user = await self._consume(session, token, VERIFY, uid)
            if user is None or not user.active:
                raise APIError(400, "invalid_link", INVALID_VERIFY)
            if not user.verified:
                user.verified, user.verified_at = True, utcnow()
                enqueue_event(session, "user.verified", user_event(user))
        self.wake()
        return user

    async def reset(self, token: str, uid: str, new_hash: str) -> User:
        """Set the new password hash and end every session of the user, in one transaction."""
        async with self.db.transaction() as session:
            user = await self._consume(session, token, RESET, uid)
            if user is None or not user.active:
                raise APIError(400, "invalid_link", INVALID_RESET)
            user.password_hash = new_hash
            await session.execute(
                update(LoginSession)
                .where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
                .values(revoked_at=utcnow(), revoked_reason="password_reset")
            )
            await self.password_changed(session, user)
        self.wake()
        return user


def check_new_password(password: str | None) -> str:
    if not password:
        raise APIError(422, "validation_error", "Please provide a new password.")
    problem = password_problem(password)
    if problem:
        raise APIError(422, "weak_password", problem)
    return password
