"""A controllable in-memory agent for fast tests of the service and routes."""

from __future__ import annotations

import asyncio
import itertools

from issuer.issuance.agents.base import (
    AgentUnavailable,
    ConnectionStatus,
    ExchangeState,
    ExchangeStatus,
    Invitation,
)


class FakeAgent:
    """Records calls; tests flip ``connected`` and ``exchanges`` to move the flow."""

    pushes_events = True

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.down = False
        self.connected: set[str] = set()
        self.exchanges: dict[str, ExchangeState] = {}
        self.offers: list[tuple[str, dict[str, str]]] = []
        self.abandoned: list[str] = []
        self.calls = 0
        self.status_reads = 0  # connection_status calls: reads of a connection record
        # Set: send_offer has chosen its exchange id (last_exchange) and waits for it to answer.
        self.answer_offers: asyncio.Event | None = None
        self.offer_waiting = asyncio.Event()
        self.last_exchange: str | None = None

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise AgentUnavailable("fake agent is down")

    async def create_invitation(self) -> Invitation:
        self._call()
        n = next(self._ids)
        return Invitation(f"https://agent.example/invite?oob=msg-{n}", f"msg-{n}", None)

    async def connection_status(self, invitation: Invitation) -> ConnectionStatus:
        self._call()
        self.status_reads += 1
        msg = invitation.invitation_msg_id or ""
        if msg in self.connected:
            return ConnectionStatus(f"conn-{msg}", active=True)
        return ConnectionStatus(None, active=False)

    async def send_offer(self, connection_id: str, attributes: dict[str, str]) -> str:
        self._call()
        self.offers.append((connection_id, attributes))
        exchange_id = f"ex-{next(self._ids)}"
        self.exchanges[exchange_id] = ExchangeState(ExchangeStatus.PENDING)
        self.last_exchange = exchange_id
        if self.answer_offers is not None:  # the agent answers late; its events may not
            self.offer_waiting.set()
            await self.answer_offers.wait()
        return exchange_id

    async def exchange_state(self, exchange_id: str) -> ExchangeState:
        self._call()
        return self.exchanges.get(exchange_id, ExchangeState(ExchangeStatus.PENDING))

    async def abandon(self, exchange_id: str, reason: str) -> None:
        self._call()
        self.abandoned.append(exchange_id)

    async def ready(self) -> bool:
        return not self.down

    async def aclose(self) -> None:
        return None
