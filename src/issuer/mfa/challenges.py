"""The MFA challenge: what a login whose account has MFA gets instead of tokens (ASVS 7.2.4).

A JWT of purpose ``mfa`` (refused by every endpoint but the second-factor ones, which alone ask
for that purpose), short-lived (5 min by default), naming the user and a challenge row that
binds it to the first factor and to the kind of login it will open. The row makes it single
use: completing the login spends it, and it allows a few attempts only.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts import queries as account_queries
from issuer.accounts.models import User
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Unauthenticated
from issuer.lib.tokens import Claims, Purpose, TokenCodec, TokenExpired, TokenInvalid
from issuer.mfa import queries
from issuer.mfa.models import MfaChallenge

log = logging.getLogger("issuer.audit")
CHALLENGE_INVALID = "The login has expired or is not valid; please log in again."


def refused() -> Unauthenticated:
    log.info("mfa challenge refused")
    return Unauthenticated(CHALLENGE_INVALID, code="mfa_challenge_invalid")


class MfaChallenges:
    def __init__(
        self, db: Database, codec: TokenCodec, clock: Clock, *, ttl: int, max_attempts: int
    ) -> None:
        self.db = db
        self.codec = codec
        self.clock = clock
        self.ttl = timedelta(seconds=ttl)
        self.max_attempts = max_attempts

    async def issue(
        self, session: AsyncSession, user: User, *, first_factor: str, kind: str
    ) -> tuple[str, datetime, tuple[str, ...]]:
        """A new challenge for ``user`` in the caller's transaction; the token, its expiry and
        the second factors the account can answer it with (``totp``, ``recovery_code``,
        ``passkey``)."""
        now = self.clock.now()
        row = MfaChallenge(
            id=secrets.token_urlsafe(24),
            user_id=user.id,
            first_factor=first_factor,
            kind=kind,
            attempts=0,
            created_at=now,
            expires_at=now + self.ttl,
        )
        session.add(row)
        token, _ = self.codec.issue(
            Purpose.MFA, sub=user.entity_id.hex, sid=row.id, ttl=self.ttl.total_seconds()
        )
        log.info("mfa challenge issued entity_id=%s after %s", user.entity_id.hex, first_factor)
        methods = ["totp"]
        if await queries.count_unused_recovery_codes(session, user.id):
            methods.append("recovery_code")
        if await queries.has_passkeys(session, user.id):
            methods.append("passkey")
        return token, row.expires_at, tuple(methods)

    def claims(self, token: str | None) -> Claims:
        if not token:
            raise refused()
        try:
            return self.codec.decode(token, Purpose.MFA)
        except (TokenExpired, TokenInvalid) as exc:
            raise refused() from exc

    async def attempt(self, claims: Claims) -> User:
        """Count one attempt at the challenge (its own transaction: a wrong code still counts);
        the user it belongs to. Refused when spent, expired or out of attempts."""
        async with self.db.transaction() as session:
            user = await account_queries.user_by_entity(session, uuid.UUID(claims.sub))
            if user is None or not user.active:
                raise refused()
            if not await queries.count_attempt(
                session, claims.sid, user.id, self.clock.now(), self.max_attempts
            ):
                raise refused()
        return user

    async def spend(self, session: AsyncSession, claims: Claims, user: User) -> MfaChallenge:
        """Spend the challenge in the transaction that completes the login (exactly once)."""
        challenge = await queries.spend_challenge(session, claims.sid, user.id, self.clock.now())
        if challenge is None:
            raise refused()
        return challenge

    async def purge(self) -> int:
        """Forget challenges and passkey ceremonies that expired over a day ago."""
        async with self.db.transaction() as session:
            return await queries.purge_expired(session, self.clock.now() - timedelta(days=1))
