"""Provider identities: a user's account at an identity provider, keyed by ``(provider,
subject)`` — never by email, which providers let their users change."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from issuer.db import Base, UTCDateTime, utcnow


class Identity(Base):
    """One linked provider account. The provider's tokens are not kept: they are used once,
    during the login or link, to ask the provider who the user is."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    user_name: Mapped[str | None] = mapped_column(String(300))
    scope: Mapped[str | None] = mapped_column(String(300))
    token_type: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("provider", "subject", name="provider_subject"),)
