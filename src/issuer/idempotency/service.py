"""Idempotent side effects: the same ``Idempotency-Key`` from the same caller within 24 h gets
the first answer again, without the work being done twice (IETF
draft-ietf-httpapi-idempotency-key-header; SECURITY.md "Nothing lost").

The key is claimed in its own transaction before the work starts (a unique index decides
between concurrent requests), and the answer is stored when the work is done. A claim whose
request never finished (the worker died) can be taken over after ``lease`` seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Conflict, InvalidInput
from issuer.idempotency import queries
from issuer.idempotency.models import IdempotencyRecord

log = logging.getLogger(__name__)
REUSED = "This Idempotency-Key was already used for a different request."
IN_PROGRESS = "A request with this Idempotency-Key is still in progress; retry shortly."


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    headers: dict[str, Any]
    body: bytes


class Idempotency:
    def __init__(
        self, db: Database, clock: Clock, *, ttl: float = 24 * 3600, lease: float = 60.0
    ) -> None:
        self.db = db
        self.clock = clock
        self.ttl = timedelta(seconds=ttl)
        self.lease = timedelta(seconds=lease)

    async def begin(self, caller: str, key: str, fingerprint: str) -> StoredAnswer | None:
        """Claim ``key`` for this request: ``None`` means "do the work"; a stored answer means
        "send this again". A different request under the same key is refused (422); the same
        one while the first is still running is a conflict (409)."""
        now = self.clock.now()
        record = IdempotencyRecord(caller=caller, key=key, fingerprint=fingerprint, created_at=now)
        try:
            async with self.db.transaction() as session:
                await queries.add(session, record)
            return None
        except IntegrityError:
            pass
        async with self.db.transaction() as session:
            found = await queries.find(session, caller, key)
            if found is None:  # released meanwhile: take it
                await queries.add(session, record)
                return None
            if found.created_at < now - self.ttl:  # expired: a new request
                if await self._take_over(session, found, fingerprint, now, now - self.ttl):
                    return None
                raise Conflict(IN_PROGRESS, code="idempotency_in_progress", retry_after=1)
            if found.fingerprint != fingerprint:
                raise InvalidInput(REUSED, code="idempotency_key_reused")
            if found.status is not None:
                return StoredAnswer(found.status, dict(found.headers or {}), found.body or b"")
            if await self._take_over(session, found, fingerprint, now, now - self.lease):
                log.warning("idempotency key of %s taken over after a lost request", caller)
                return None
        raise Conflict(IN_PROGRESS, code="idempotency_in_progress", retry_after=1)

    async def _take_over(
        self,
        session: AsyncSession,
        found: IdempotencyRecord,
        fingerprint: str,
        now: datetime,
        before: datetime,
    ) -> bool:
        return await queries.take_over(
            session, found.id, stale_before=before, fingerprint=fingerprint, now=now
        )

    async def complete(self, caller: str, key: str, answer: StoredAnswer) -> None:
        async with self.db.transaction() as session:
            await queries.complete(
                session, caller, key, status=answer.status, headers=answer.headers,
                body=answer.body, now=self.clock.now(),
            )  # fmt: skip

    async def release(self, caller: str, key: str) -> None:
        """Forget an unfinished claim (the work failed on our side: a retry may do it)."""
        async with self.db.transaction() as session:
            await queries.release(session, caller, key)

    async def purge(self) -> int:
        """Delete keys older than the 24 h window."""
        async with self.db.transaction() as session:
            return await queries.purge(session, self.clock.now() - self.ttl)
