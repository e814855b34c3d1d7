"""Realtime tables: messages too big for NOTIFY, and who is subscribed to which channel (in
every worker: presence members and the Events API's channel list are read from here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from issuer.db import Base, UTCDateTime, utcnow


class RealtimePayload(Base):
    """A broker message over NOTIFY's 8000 bytes; the notification carries its id."""

    __tablename__ = "realtime_payloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChannelSubscription(Base):
    """One socket subscribed to one channel. ``worker`` refreshes ``seen_at`` while it runs;
    rows of a worker that died stop counting once ``seen_at`` is old."""

    __tablename__ = "channel_subscriptions"

    socket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(200), primary_key=True)
    worker: Mapped[str] = mapped_column(String(32))
    # Presence channels: the member (channel_data's user_id and user_info).
    user_id: Mapped[str | None] = mapped_column(String(128))
    user_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_channel_subscriptions_channel", "channel"),)
