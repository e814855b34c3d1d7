"""Login sessions and their tokens: issue, resolve, rotate, revoke (ASVS 7.x, 9.x, 10.4.x).

A login creates one ``LoginSession`` row; its id is the ``sid`` of the access and refresh
tokens and of the browser cookie, so ending the row ends the login everywhere, in every worker
and after restarts. Refresh tokens rotate; presenting a used one (other than the immediately
previous one within ``refresh_grace`` seconds) revokes the whole login.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts import queries
from issuer.accounts.events import user_event
from issuer.accounts.models import LoginSession, User
from issuer.accounts.principals import PrincipalCache
from issuer.clock import Clock
from issuer.db import Database, after_commit
from issuer.errors import Unauthenticated
from issuer.lib.network import Client
from issuer.lib.tokens import Claims, Purpose, TokenCodec, TokenExpired, TokenInvalid
from issuer.outbox import queries as outbox_queries
from issuer.outbox.service import Outbox

log = logging.getLogger("issuer.audit")


async def sessions_ended(
    outbox: Outbox, session: AsyncSession, user: User, ids: list[str], reason: str
) -> None:
    """The ``session.ended`` event of ``ids`` (none when no session ended)."""
    if ids:
        await outbox.event(
            session, "session.ended",
            {"entity_id": user.entity_id.hex, "sessions": ids, "reason": reason},
            user_id=user.id,
        )  # fmt: skip


MISSING = "Token is missing"
EXPIRED = "Token has expired"
INVALID = "Invalid token"
REVOKED = "Token blacklisted. Please log in again."


def refused(message: str, code: str) -> Unauthenticated:
    """A refused credential; every refusal is an audit event (ASVS 16.3.1)."""
    log.info("authentication refused: %s", code)
    return Unauthenticated(message, code=code)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_at: int  # unix time
    session_id: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user and the login session the credential belongs to."""

    user: User
    session: LoginSession


class LoginSessions:
    def __init__(
        self,
        db: Database,
        codec: TokenCodec,
        clock: Clock,
        outbox: Outbox,
        *,
        access_ttl: int,
        session_ttl: int,
        idle_timeout: int,
        refresh_grace: float,
        principals: PrincipalCache | None = None,
    ) -> None:
        self.db = db
        # Off (bypassed) until the LISTEN connection that keeps it true is up.
        self.principals = principals or PrincipalCache()
        self.codec = codec
        self.clock = clock
        self.outbox = outbox
        self.access_ttl = access_ttl
        self.session_ttl = timedelta(seconds=session_ttl)
        self.idle_timeout = timedelta(seconds=idle_timeout)
        self.refresh_grace = timedelta(seconds=refresh_grace)
        # Refresh last_seen_at at most this often: a write per request would cost throughput.
        self.touch_every = min(timedelta(seconds=60), self.idle_timeout / 4)

    def _tokens(
        self, user: User, sid: str, expires_at: datetime, refresh_jti: str | None = None
    ) -> tuple[TokenPair, Claims]:
        """The tokens of login session ``sid`` (which ends at ``expires_at``)."""
        sub = user.entity_id.hex
        access, claims = self.codec.issue(Purpose.ACCESS, sub=sub, sid=sid, ttl=self.access_ttl)
        remaining = (expires_at - self.clock.now()).total_seconds()
        refresh, refresh_claims = self.codec.issue(
            Purpose.REFRESH, sub=sub, sid=sid, ttl=max(1, remaining), jti=refresh_jti
        )
        return TokenPair(access, refresh, claims.exp, sid), refresh_claims

    async def open(
        self,
        session: AsyncSession,
        user: User,
        *,
        kind: str,
        client: Client,
        proof: queries.PasswordProof | None = None,
    ) -> TokenPair | None:
        """A new login session (and its tokens) inside the caller's transaction; a new one for
        every authentication (ASVS 7.2.4). ``kind``: ``api`` or ``browser``. Its row, the
        user's last login and its ``session.opened`` event are one statement on PostgreSQL.

        With ``proof`` (a password login), that statement also checks it; ``None`` when it no
        longer holds (nothing was written)."""
        now = self.clock.now()
        sid, expires_at = secrets.token_urlsafe(24), now + self.session_ttl
        pair, refresh = self._tokens(user, sid, expires_at)
        login = {
            "id": sid, "kind": kind, "user_agent": client.user_agent, "ip": client.ip,
            "created_at": now, "last_seen_at": now, "expires_at": expires_at,
            "refresh_jti": refresh.jti,
        }  # fmt: skip
        event = self.outbox.event_row(
            session, "session.opened",
            {**user_event(user), "session": {"id": sid, "kind": kind,
                                            "created_at": now.isoformat()}},
        )  # fmt: skip
        if await queries.open_login(session, user.id, now, login, event, proof) is None:
            return None
        user.last_login_at = now
        return pair

    def claims(self, token: str, purpose: Purpose) -> Claims:
        """Verified claims of a ``purpose`` token; refused with the legacy messages otherwise."""
        try:
            return self.codec.decode(token, purpose)
        except TokenExpired as exc:
            raise refused(EXPIRED, "token_expired") from exc
        except TokenInvalid as exc:
            raise refused(INVALID, "invalid_token") from exc

    async def resolve_token(self, token: str) -> Principal:
        """The principal behind an access token; refused with the legacy messages otherwise."""
        claims = self.claims(token, Purpose.ACCESS)
        principal = await self.resolve_session(claims.sid)
        if principal.user.entity_id.hex != claims.sub:
            raise refused(INVALID, "invalid_token")
        return principal

    async def resolve_session(self, sid: str) -> Principal:
        """The principal behind a session id (token ``sid`` or browser cookie). A session past
        its lifetime or idle too long ends here; an active one is marked seen now and then.

        From the worker's :class:`PrincipalCache` when it holds the session and the session
        needs no marking; otherwise from the database (which then fills the cache)."""
        now = self.clock.now()
        cached = self.principals.get(sid)
        if cached is not None:
            user, row = cached.build()
            if (
                row.revoked_at is None
                and user.active
                and row.expires_at > now
                and row.last_seen_at + self.touch_every > now
            ):
                return Principal(user, row)
        generation = self.principals.generation
        async with self.db.session() as session:
            found = await queries.principal_rows(session, sid)
            if found is None:
                raise refused(REVOKED, "session_revoked")
            user, row = found
            if row.revoked_at is not None or not user.active:
                raise refused(REVOKED, "session_revoked")
            if row.expires_at <= now or row.last_seen_at + self.idle_timeout <= now:
                await queries.revoke_session(session, sid, "expired", now)
                await session.commit()
                raise refused(REVOKED, "session_expired")
            seen_at = row.last_seen_at
            if row.last_seen_at + self.touch_every <= now:
                await queries.touch_session(session, sid, now)
                await session.commit()
                seen_at = now
        self.principals.put(generation, user, row, seen_at=seen_at)
        return Principal(user, row)

    def _evict_after_commit(self, session: AsyncSession, user: User) -> None:
        """This worker forgets the user's sessions as soon as the transaction commits (the
        others when PostgreSQL's notification of the change reaches them)."""
        user_id = user.id
        after_commit(session, lambda: self.principals.evict_user(user_id))

    async def refresh(self, token: str) -> TokenPair:
        """Rotate: a new access and refresh token; a replayed old one revokes the login."""
        claims = self.claims(token, Purpose.REFRESH)
        principal = await self.resolve_session(claims.sid)
        now = self.clock.now()
        async with self.db.transaction() as session:
            await outbox_queries.lock_user_events(session, principal.user.id)
            current_jti = await queries.rotate_refresh_token(
                session,
                claims.sid,
                claims.jti,
                new_jti=secrets.token_urlsafe(16),
                now=now,
                grace_start=now - self.refresh_grace,
            )
            self._evict_after_commit(session, principal.user)
            if current_jti is None and await queries.revoke_session(
                session, claims.sid, "refresh_token_reuse", now
            ):
                await sessions_ended(
                    self.outbox, session, principal.user, [claims.sid], "refresh_token_reuse"
                )
        if current_jti is None:
            log.warning("refresh token reuse: login sid=%s… revoked", claims.sid[:6])
            raise refused(REVOKED, "refresh_token_reused")
        log.info("tokens refreshed sid=%s…", claims.sid[:6])
        row = principal.session
        pair, _ = self._tokens(principal.user, row.id, row.expires_at, refresh_jti=current_jti)
        return pair

    async def revoke(self, principal: Principal, reason: str) -> None:
        """End the caller's own login (logout)."""
        sid = principal.session.id
        async with self.db.transaction() as session:
            await outbox_queries.lock_user_events(session, principal.user.id)
            self._evict_after_commit(session, principal.user)
            if await queries.revoke_session(session, sid, reason, self.clock.now()):
                await sessions_ended(self.outbox, session, principal.user, [sid], reason)
        log.info("session sid=%s… ended (%s)", sid[:6], reason)

    async def revoke_all(
        self, session: AsyncSession, user: User, reason: str, *, keep: str | None = None
    ) -> int:
        """End every session of the user but ``keep``, in the caller's transaction."""
        self._evict_after_commit(session, user)
        ended = await queries.revoke_user_sessions(
            session, user.id, reason, self.clock.now(), keep=keep
        )
        await sessions_ended(self.outbox, session, user, ended, reason)
        log.info("sessions of user %s ended (%s): %d", user.id, reason, len(ended))
        return len(ended)

    async def active(self, user_id: int) -> list[LoginSession]:
        async with self.db.session() as session:
            return await queries.active_sessions(
                session, user_id, self.clock.now(), self.idle_timeout
            )

    async def end(self, user: User, sid: str) -> bool:
        """End one of the user's own sessions; ``False`` if it is not theirs or not active."""
        async with self.db.transaction() as session:
            await outbox_queries.lock_user_events(session, user.id)
            self._evict_after_commit(session, user)
            ended = await queries.end_own_session(session, user.id, sid, self.clock.now())
            if ended:
                await sessions_ended(self.outbox, session, user, [sid], "ended")
        log.info("session sid=%s… ended by its user: %s", sid[:6], ended)
        return ended
