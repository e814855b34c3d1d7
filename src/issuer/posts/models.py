"""Posts and profile pictures (kept in the database, so every worker and host serves them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from issuer.db import Base, UTCDateTime, utcnow


class Post(Base):
    """A post. ``version`` grows with every edit: it is the post's ``ETag``."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(100))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        # Newest first, ties by id: the listing reads this index in order (no sort).
        Index("ix_posts_created_at_id", "created_at", "id"),
        Index("ix_posts_user_created_at_id", "user_id", "created_at", "id"),
    )


class ProfilePicture(Base):
    """A user's picture, re-encoded as JPEG at 125×125 and 400×400 (no EXIF)."""

    __tablename__ = "profile_pictures"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    small: Mapped[bytes] = mapped_column(LargeBinary)
    large: Mapped[bytes] = mapped_column(LargeBinary)
    # A digest of the pictures: their URL and ETag, so they can be cached for good.
    etag: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
