"""Tables of the issuance portal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from issuer.db import Base, UTCDateTime, utcnow
from issuer.issuance.states import State

# The broker topic of a session's snapshots is this prefix and the session id.
TOPIC_PREFIX = "issuance:"
# Errors are stored (and pushed, inside NOTIFY's 8000 bytes) up to this many characters.
ERROR_LIMIT = 500


def topic(session_id: str) -> str:
    """The broker topic of an issuance session's snapshots."""
    return f"{TOPIC_PREFIX}{session_id}"


class IssuanceSession(Base):
    """One visitor's way from invitation to credential. ``id`` is 256 bits from ``secrets``."""

    __tablename__ = "issuance_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=State.INVITED)
    # Bumped by every transition; the browser drops messages older than what it has.
    version: Mapped[int] = mapped_column(Integer, default=1)
    language: Mapped[str] = mapped_column(String(2))
    invitation_url: Mapped[str | None] = mapped_column(Text)
    # The short invitation URL's id (``/i/<id>``, Aries RFC 0434 URL shortening): public, so
    # not the session id; 96 bits from ``secrets`` (issuance.invitations).
    invitation_public_id: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)
    invitation_msg_id: Mapped[str | None] = mapped_column(String(128), index=True)
    connection_id: Mapped[str | None] = mapped_column(String(128), index=True)
    exchange_id: Mapped[str | None] = mapped_column(String(128), index=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Last time the agent's record was read back (reconciliation of missed webhooks).
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the current step times out (invitation unused, offer unanswered).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_issuance_sessions_state_expires_at", "state", "expires_at"),)

    def snapshot(self) -> dict[str, Any]:
        """The JSON pushed to the browser: ``{id, state, version, error, updated_at}``."""
        return {
            "id": self.id,
            "state": self.state,
            "version": self.version,
            "error": self.error,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }
