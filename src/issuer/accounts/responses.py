"""Response bodies built from rows (004's ``user`` object, 003's status, the session list)."""

from __future__ import annotations

from issuer.accounts.models import LoginSession, User
from issuer.accounts.schemas import SessionOut, StatusData, StatusOut, UserOut
from issuer.accounts.sessions import TokenPair


def user_out(user: User, pair: TokenPair | None = None) -> UserOut:
    return UserOut(
        entity_id=user.entity_id.hex,
        active=user.active,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        verified=user.verified,
        verified_on=int(user.verified_at.timestamp()) if user.verified_at else None,
        access_token=pair.access_token if pair else None,
        expires_in=pair.access_expires_at if pair else None,
        mfa_enabled=user.mfa_enabled,
    )


def session_out(row: LoginSession, current_id: str) -> SessionOut:
    return SessionOut(
        id=row.id,
        kind=row.kind,
        current=row.id == current_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        user_agent=row.user_agent,
        ip=row.ip,
    )


def status_out(user: User) -> StatusOut:
    return StatusOut(
        data=StatusData(
            user_id=user.entity_id.hex,
            email=user.email,
            username=user.username,
            admin=user.admin,
            registered_on=user.created_at,
        )
    )
