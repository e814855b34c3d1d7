"""One poller per active session for agents that send no events (the original REST API).

Every listener of a session — websockets and the legacy polling routes — shares that session's
single poller, which asks the agent with exponential backoff and stops when the session is over
or nobody has listened for ``idle_timeout`` seconds. The original asked the agent once per open
tab every 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import time

from issuer.issuance.agents.base import AgentUnavailable
from issuer.issuance.models import topic
from issuer.issuance.service import IssuanceService
from issuer.issuance.states import FINAL_STATES
from issuer.supervisor import Supervisor

log = logging.getLogger(__name__)


class Pollers:
    def __init__(
        self,
        service: IssuanceService,
        supervisor: Supervisor,
        *,
        initial_delay: float,
        backoff: float,
        max_delay: float,
        idle_timeout: float = 30.0,
    ) -> None:
        self._service = service
        self._supervisor = supervisor
        self._initial = initial_delay
        self._backoff = backoff
        self._max = max_delay
        self._idle_timeout = idle_timeout
        self._seen: dict[str, float] = {}

    def __len__(self) -> int:
        return sum(f"poll:{session_id}" in self._supervisor for session_id in self._seen)

    def task(self, session_id: str) -> asyncio.Task[None] | None:
        """The poller of ``session_id`` while it runs."""
        return self._supervisor.task(f"poll:{session_id}")

    def ensure(self, session_id: str) -> None:
        """Note a listener for ``session_id`` and start its poller unless one runs (under the
        supervisor, which restarts it if it crashes and stops it at shutdown)."""
        self._seen[session_id] = time.monotonic()
        self._supervisor.run(
            f"poll:{session_id}", lambda stopping: self._poll(session_id, stopping)
        )

    def _idle(self, session_id: str) -> bool:
        if self._service.broker.listener_count(topic(session_id)):
            self._seen[session_id] = time.monotonic()
            return False
        return time.monotonic() - self._seen.get(session_id, 0.0) > self._idle_timeout

    async def _poll(self, session_id: str, stopping: asyncio.Event) -> None:
        await self._poll_until_done(session_id, stopping)  # a crash keeps its listeners noted
        self._seen.pop(session_id, None)

    async def _poll_until_done(self, session_id: str, stopping: asyncio.Event) -> None:
        delay = self._initial
        version = -1
        while not self._idle(session_id):
            try:
                await asyncio.wait_for(stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            row = await self._service.get(session_id)
            if row is None or row.state in FINAL_STATES:
                return
            if row.version != version:  # something else moved it (e.g. the name form)
                version, delay = row.version, self._initial
            try:
                moved = await self._service.reconcile(row)
            except AgentUnavailable as exc:
                log.warning("poll of %s… failed: %s", session_id[:8], exc)
                moved = None
            if moved is not None:
                if moved.state in FINAL_STATES:
                    return
                version, delay = moved.version, self._initial
            else:
                delay = min(delay * self._backoff, self._max)
