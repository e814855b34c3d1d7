"""The time services read: the system clock in production, a clock tests move by hand.

Every expiry, lease, grace window and retry delay is computed from ``Clock.now()``, so a test
advances time instead of sleeping through it. (Token ``exp`` claims are checked by PyJWT against
the system clock; nothing here changes that.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until ``advance`` moves it (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
