"""The transactional outbox: emails and domain events written with the change that causes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from issuer.db import Base, UTCDateTime, utcnow


class OutboxMessage(Base):
    """One email (``kind="email"``) or domain event (``kind="event"``) to deliver at least once.

    ``event_id`` is the id consumers de-duplicate on (the AMQP ``message_id``, the email's
    ``Message-ID``). ``locked_until`` is a lease: a dispatcher that dies mid-delivery leaves the
    row to be picked up again when it runs out.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An entity event of a user: whose (``users.id``) and its number (``users.event_seq``).
    user_id: Mapped[int | None] = mapped_column(Integer)
    seq: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_outbox_pending", "sent_at", "failed_at", "available_at"),
        Index("ix_outbox_user_seq", "user_id", "seq"),
    )
