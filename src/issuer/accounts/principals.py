"""A worker's memory of its callers: login-session rows and their users, so an authenticated
request needs no database round trip.

Correct only while every change reaches it, so it is used only while it hears them: on
PostgreSQL, triggers (migration 0010) send ``pg_notify('issuer_principals', 's:<sid>' |
'u:<user id>')`` when a login session or a user changes, delivered at commit to every worker's
LISTEN connection (``issuer.realtime.broker.PostgresBroker``), which evicts the rows. Until that
connection is up, and whenever it is lost, the cache is emptied and bypassed: a revocation is
never delayed by it, only by the time PostgreSQL takes to deliver a notification (the worker
that revokes also evicts at once). On SQLite it is never enabled.

A fill that raced an eviction is dropped: :meth:`PrincipalCache.generation` is read before the
database read and checked again when storing. Entries hold column values, and every hit builds
fresh ORM objects, so a request that changes its copy (``user.mfa_enabled = True`` after the
update) never changes another's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import inspect

from issuer.accounts.models import LoginSession, User
from issuer.db import detached

log = logging.getLogger(__name__)
CHANNEL = "issuer_principals"
USER_COLUMNS = tuple(c.key for c in inspect(User).column_attrs)
SESSION_COLUMNS = tuple(c.key for c in inspect(LoginSession).column_attrs)


@dataclass(frozen=True, slots=True)
class Entry:
    user: tuple[Any, ...]
    session: tuple[Any, ...]

    def build(self) -> tuple[User, LoginSession]:
        """Detached ORM objects of this request's own, as if loaded: made by the mappers'
        class managers with their values in place (the constructors would fire an attribute
        event per column)."""
        return (
            detached(User, zip(USER_COLUMNS, self.user, strict=True)),
            detached(LoginSession, zip(SESSION_COLUMNS, self.session, strict=True)),
        )


class PrincipalCache:
    """At most ``max_entries`` login sessions (emptied when full: the busiest refill first)."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, Entry] = {}
        self._by_user: dict[int, set[str]] = {}
        self._generation = 0
        self._enabled = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def generation(self) -> int:
        """Read before a database read whose result may be :meth:`put`."""
        return self._generation

    def get(self, sid: str) -> Entry | None:
        return self._entries.get(sid) if self._enabled else None

    def put(self, generation: int, user: User, session: LoginSession, *, seen_at: datetime) -> None:
        """Remember ``session`` (last seen at ``seen_at``) and its ``user`` as read after
        :attr:`generation` was ``generation``; ignored if anything was evicted since (or the
        cache is off)."""
        if not self._enabled or generation != self._generation:
            return
        if len(self._entries) >= self.max_entries:
            self._clear()
        entry = Entry(
            tuple(getattr(user, c) for c in USER_COLUMNS),
            tuple(seen_at if c == "last_seen_at" else getattr(session, c) for c in SESSION_COLUMNS),
        )
        self._entries[session.id] = entry
        self._by_user.setdefault(user.id, set()).add(session.id)

    def evict_session(self, sid: str) -> None:
        self._generation += 1
        entry = self._entries.pop(sid, None)
        if entry is not None:
            user_id = entry.user[USER_COLUMNS.index("id")]
            sids = self._by_user.get(user_id)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._by_user[user_id]

    def evict_user(self, user_id: int) -> None:
        self._generation += 1
        for sid in self._by_user.pop(user_id, ()):
            self._entries.pop(sid, None)

    def notified(self, payload: str) -> None:
        """A notification on :data:`CHANNEL`: ``s:<sid>`` or ``u:<user id>``."""
        kind, _, key = payload.partition(":")
        if kind == "s":
            self.evict_session(key)
        elif kind == "u" and key.isdigit():
            self.evict_user(int(key))
        else:
            log.warning("ignored a malformed notification on %s; emptied the cache", CHANNEL)
            self._clear()

    def listening(self, up: bool) -> None:
        """The LISTEN connection is up (start trusting, from empty) or lost (stop)."""
        self._clear()
        self._enabled = up

    def _clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_user.clear()
