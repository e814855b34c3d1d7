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
import logging
import secrets
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts import queries
from issuer.accounts.events import user_event
from issuer.accounts.models import OneTimeToken, User
from issuer.accounts.sessions import sessions_ended
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Refused
from issuer.outbox.service import Outbox

log = logging.getLogger("issuer.audit")
VERIFY = "verify_email"
RESET = "reset_password"
INVALID_VERIFY = "The confirmation link is invalid or has expired."
INVALID_RESET = "Reset Password token has expired"
MAX_TOKEN_LENGTH = 200


def uidb64(user: User) -> str:
    return base64.urlsafe_b64encode(user.entity_id.hex.encode()).rstrip(b"=").decode()


def entity_from_uidb64(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode(errors="surrogatepass")).hexdigest()


class AccountEmails:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        *,
        base_url: str,
        verify_ttl: int,
        reset_ttl: int,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.verify_ttl = timedelta(seconds=verify_ttl)
        self.reset_ttl = timedelta(seconds=reset_ttl)

    def _token(self, session: AsyncSession, user: User, purpose: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        ttl = self.verify_ttl if purpose == VERIFY else self.reset_ttl
        session.add(
            OneTimeToken(
                user_id=user.id,
                purpose=purpose,
                token_hash=digest(token),
                created_at=now,
                expires_at=now + ttl,
            )
        )
        return token

    def _verification(self, session: AsyncSession, user: User) -> None:
        token = self._token(session, user, VERIFY)
        self.outbox.email(
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

    # --- steps of other use cases, inside their transaction ---------------------------------

    async def created(self, session: AsyncSession, user: User) -> None:
        """A new account: ``user.created``, and the verification email if it has an email that
        is not verified yet (an identity provider may have verified it)."""
        await self.outbox.event(session, "user.created", user_event(user), user_id=user.id)
        if user.password_hash is not None:  # 004's "signup" login method
            await self.outbox.event(
                session, "login_method.created", {**user_event(user), "provider": "signup"},
                user_id=user.id,
            )  # fmt: skip
        if user.email and not user.verified:
            self._verification(session, user)

    async def profile_changed(self, session: AsyncSession, user: User, *, verify: bool) -> None:
        """``user.updated``, and a verification email for a new address."""
        await self.outbox.event(session, "user.updated", user_event(user), user_id=user.id)
        if verify and user.email:
            self._verification(session, user)

    async def password_changed(self, session: AsyncSession, user: User) -> None:
        await self.outbox.event(session, "password.changed", user_event(user), user_id=user.id)
        if user.email:
            self.outbox.email(
                session,
                "password_changed",
                to=user.email,
                language=user.language,
                context={
                    "when": self.clock.now().strftime("%Y-%m-%d %H:%M"),
                    "link": f"{self.base_url}/forgot_password",
                },
            )

    # --- use cases -------------------------------------------------------------------------

    async def signup_taken(self, email: str) -> None:
        """Someone signed up with a known email: tell its owner (the answer stays the same)."""
        async with self.db.transaction() as session:
            user = await queries.user_by_email(session, email)
            if user is not None and user.email:
                self.outbox.email(
                    session,
                    "account_exists",
                    to=user.email,
                    language=user.language,
                    context={"link": f"{self.base_url}/forgot_password"},
                )

    async def resend(self, email: str) -> None:
        async with self.db.transaction() as session:
            user = await queries.user_by_email(session, email)
            if user is not None and user.active and not user.verified:
                self._verification(session, user)

    async def forgot(self, email: str) -> None:
        async with self.db.transaction() as session:
            user = await queries.user_by_email(session, email)
            if user is not None and user.active and user.email:
                token = self._token(session, user, RESET)
                self.outbox.email(
                    session,
                    RESET,
                    to=user.email,
                    language=user.language,
                    context={
                        "link": f"{self.base_url}/reset_password/{token}/{uidb64(user)}",
                        "minutes": max(1, int(self.reset_ttl.total_seconds() // 60)),
                    },
                )

    async def _consume(
        self, session: AsyncSession, token: str, purpose: str, uid: str
    ) -> User | None:
        entity_id = entity_from_uidb64(uid)
        if entity_id is None or len(token) > MAX_TOKEN_LENGTH:
            return None
        user_id = await queries.consume_one_time_token(
            session, digest(token), purpose, self.clock.now()
        )
        if user_id is None:
            return None
        user = await queries.user_by_id(session, user_id)
        return user if user is not None and user.entity_id == entity_id else None

    async def confirm_email(self, session: AsyncSession, token: str, uid: str) -> User:
        """Spend a verification link and mark the email verified, in the caller's transaction;
        refused with 004's message when the link is not valid."""
        user = await self._consume(session, token, VERIFY, uid)
        if user is None or not user.active:
            raise Refused(INVALID_VERIFY, code="invalid_link")
        if not user.verified:
            user.verified, user.verified_at = True, self.clock.now()
            await self.outbox.event(session, "user.verified", user_event(user), user_id=user.id)
        log.info("email verified entity_id=%s", user.entity_id.hex)
        return user

    async def reset(self, token: str, uid: str, new_hash: str) -> User:
        """Set the new password hash and end every session of the user, in one transaction."""
        async with self.db.transaction() as session:
            user = await self._consume(session, token, RESET, uid)
            if user is None or not user.active:
                raise Refused(INVALID_RESET, code="invalid_link")
            await queries.set_password_hash(session, user.id, new_hash)
            ended = await queries.revoke_user_sessions(
                session, user.id, "password_reset", self.clock.now()
            )
            await self.password_changed(session, user)
            await sessions_ended(self.outbox, session, user, ended, "password_reset")
        log.info("password reset entity_id=%s", user.entity_id.hex)
        return user


class EmailLinkFactor:
    """The emailed verification link: following it confirms the address and logs in (004), or
    asks for the second factor when the account has MFA (a link alone must not log in then)."""

    name = "email_link"
    multi_factor = False
    kind: str | None = None

    def __init__(self, emails: AccountEmails, token: str, uid: str) -> None:
        self._emails, self._token, self._uid = emails, token, uid

    async def check(self) -> None:
        return None

    async def confirm(self, session: AsyncSession) -> User:
        return await self._emails.confirm_email(session, self._token, self._uid)
