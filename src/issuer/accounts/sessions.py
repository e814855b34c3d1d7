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

from sqlalchemy import and_, case, or_, select, update

from issuer.accounts.models import LoginSession, User
from issuer.db import Database, as_utc, utcnow
from issuer.errors import APIError
from issuer.lib.tokens import Claims, Purpose, TokenCodec, TokenExpired, TokenInvalid

log = logging.getLogger("issuer.audit")

MISSING = "Token is missing"
EXPIRED = "Token has expired"
INVALID = "Invalid token"
REVOKED = "Token blacklisted. Please log in again."


def unauthorized(message: str, code: str = "unauthorized") -> APIError:
    """A 401 in the one error shape; every refusal is an audit event (ASVS 16.3.1)."""
    log.info("authentication refused: %s", code)
    return APIError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="issuer"'})


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


class Sessions:
    def __init__(
        self,
        db: Database,
        codec: TokenCodec,
        *,
        access_ttl: int,
        session_ttl: int,
        idle_timeout: int,
        refresh_grace: float,
    ) -> None:
        self.db = db
        self.codec = codec
        self.access_ttl = access_ttl
        self.session_ttl = timedelta(seconds=session_ttl)
        self.idle_timeout = timedelta(seconds=idle_timeout)
        self.refresh_grace = timedelta(seconds=refresh_grace)
        # Refresh last_seen_at at most this often: a write per request would cost throughput.
        self.touch_every = min(timedelta(seconds=60), self.idle_timeout / 4)

    def _tokens(
        self, user: User, row: LoginSession, refresh_jti: str | None = None
    ) -> tuple[TokenPair, Claims]:
        sub = user.entity_id.hex
        access, claims = self.codec.issue(Purpose.ACCESS, sub=sub, sid=row.id, ttl=self.access_ttl)
        remaining = (as_utc(row.expires_at) - utcnow()).total_seconds()
        refresh, refresh_claims = self.codec.issue(
            Purpose.REFRESH, sub=sub, sid=row.id, ttl=max(1, remaining), jti=refresh_jti
        )
        return TokenPair(access, refresh, claims.exp, row.id), refresh_claims

    async def open(
        self, user: User, *, kind: str, user_agent: str | None, ip: str | None
    ) -> TokenPair:
        """A new session (and tokens) for every authentication (ASVS 7.2.4)."""
        now = utcnow()
        row = LoginSession(
            id=secrets.token_urlsafe(24),
            user_id=user.id,
            kind=kind,
            user_agent=(user_agent or "")[:300] or None,
            ip=ip,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.session_ttl,
        )
        pair, refresh = self._tokens(user, row)
        row.refresh_jti = refresh.jti
        async with self.db.transaction() as session:
            session.add(row)
            await session.execute(update(User).where(User.id == user.id).values(last_login_at=now))
        user.last_login_at = now
        log.info("login entity_id=%s sid=%s… kind=%s", user.entity_id.hex, row.id[:6], kind)
        return pair

    def _claims(self, token: str, purpose: Purpose) -> Claims:
        """Verified claims of a ``purpose`` token; 401 with the legacy messages otherwise."""
        try:
            return self.codec.decode(token, purpose)
        except TokenExpired as exc:
            raise unauthorized(EXPIRED, "token_expired") from exc
        except TokenInvalid as exc:
            raise unauthorized(INVALID, "invalid_token") from exc

    async def resolve_token(self, token: str) -> Principal:
        """The principal behind an access token; 401 with the legacy messages otherwise."""
        claims = self._claims(token, Purpose.ACCESS)
        principal = await self.resolve_session(claims.sid)
        if principal.user.entity_id.hex != claims.sub:
            raise unauthorized(INVALID, "invalid_token")
        return principal

    async def resolve_session(self, sid: str) -> Principal:
        """The principal behind a session id (token ``sid`` or browser cookie)."""
        async with self.db.sessions() as session:
            found = (
                await session.execute(
                    select(User, LoginSession)
                    .join(LoginSession, LoginSession.user_id == User.id)
                    .where(LoginSession.id == sid)
                )
            ).first()
        if found is None:
            raise unauthorized(REVOKED, "session_revoked")
        user, row = found
        now = utcnow()
        if row.revoked_at is not None or not user.active:
            raise unauthorized(REVOKED, "session_revoked")
        if as_utc(row.expires_at) <= now or as_utc(row.last_seen_at) + self.idle_timeout <= now:
            await self.revoke(row.id, "expired")
            raise unauthorized(REVOKED, "session_expired")
        if as_utc(row.last_seen_at) + self.touch_every <= now:
            await self._touch(row.id, now)
        return Principal(user, row)

    async def _touch(self, sid: str, now: datetime) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(LoginSession).where(LoginSession.id == sid).values(last_seen_at=now)
            )

    async def refresh(self, token: str) -> TokenPair:
        """Rotate: a new access and refresh token; a replayed old one revokes the login."""
        claims = self._claims(token, Purpose.REFRESH)
        principal = await self.resolve_session(claims.sid)
        new_jti = secrets.token_urlsafe(16)
        now = utcnow()
        grace_start = now - self.refresh_grace
        # The current token rotates. The immediately previous one (the other tab of a concurrent
        # refresh) gets the current one again rather than a new branch: a forked chain would make
        # the next refresh of either tab look like a replay and end the login.
        is_current = LoginSession.refresh_jti == claims.jti
        async with self.db.transaction() as session:
            rotated = await session.execute(
                update(LoginSession)
                .where(LoginSession.id == claims.sid, LoginSession.revoked_at.is_(None))
                .where(
                    or_(
                        LoginSession.refresh_jti == claims.jti,
                        and_(
                            LoginSession.previous_refresh_jti == claims.jti,
                            LoginSession.rotated_at > grace_start,
                        ),
                    )
                )
                .values(
                    previous_refresh_jti=case(
                        (is_current, LoginSession.refresh_jti),
                        else_=LoginSession.previous_refresh_jti,
                    ),
                    refresh_jti=case((is_current, new_jti), else_=LoginSession.refresh_jti),
                    rotated_at=case((is_current, now), else_=LoginSession.rotated_at),
                    last_seen_at=now,
                )
                .returning(LoginSession.refresh_jti)
                .execution_options(synchronize_session=False)
            )
            current_jti = rotated.scalar_one_or_none()
        if current_jti is None:
            await self.revoke(claims.sid, "refresh_token_reuse")
            log.warning("refresh token reuse: login sid=%s… revoked", claims.sid[:6])
            raise unauthorized(REVOKED, "refresh_token_reused")
        log.info("tokens refreshed sid=%s…", claims.sid[:6])
        pair, _ = self._tokens(principal.user, principal.session, refresh_jti=current_jti)
        return pair

    async def revoke(self, sid: str, reason: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(LoginSession)
                .where(LoginSession.id == sid, LoginSession.revoked_at.is_(None))
                .values(revoked_at=utcnow(), revoked_reason=reason)
            )
        log.info("session sid=%s… ended (%s)", sid[:6], reason)

    async def revoke_all(self, user_id: int, reason: str, *, keep: str | None = None) -> int:
        """End every session of the user (but ``keep``): password change/reset, deactivation."""
        statement = (
            update(LoginSession)
            .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        if keep is not None:
            statement = statement.where(LoginSession.id != keep)
        async with self.db.transaction() as session:
            result = await session.execute(statement)
        ended = int(result.rowcount)  # type: ignore[attr-defined]
        log.info("sessions of user %s ended (%s): %d", user_id, reason, ended)
        return ended

    async def active(self, user_id: int) -> list[LoginSession]:
        now = utcnow()
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(LoginSession)
                .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
                .where(LoginSession.expires_at > now)
                .where(LoginSession.last_seen_at > now - self.idle_timeout)
                .order_by(LoginSession.created_at.desc())
            )
            return list(rows)

    async def end(self, user_id: int, sid: str) -> bool:
        """End one of the user's own sessions; ``False`` if it is not theirs or not active."""
        async with self.db.transaction() as session:
            result = await session.execute(
                update(LoginSession)
                .where(LoginSession.id == sid, LoginSession.user_id == user_id)
                .where(LoginSession.revoked_at.is_(None))
                .values(revoked_at=utcnow(), revoked_reason="ended_by_user")
            )
        ended = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        log.info("session sid=%s… ended by its user: %s", sid[:6], ended)
        return ended
