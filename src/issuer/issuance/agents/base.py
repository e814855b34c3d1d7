"""The one interface both credential agents implement.

The service never knows which agent it talks to: it asks for an invitation, whether a connection
is up, to send a credential offer, and how an exchange stands. Every call has an explicit timeout
and raises :class:`AgentUnavailable` when the agent is down, slow or answers nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class AgentUnavailable(Exception):
    """The agent did not answer in time, or answered with an error."""


class ExchangeStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Invitation:
    """``url`` is the QR content; ``connection_id`` is known up front only for some agents."""

    url: str
    invitation_msg_id: str | None
    connection_id: str | None


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    connection_id: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class ExchangeState:
    status: ExchangeStatus
    detail: str | None = None


class Agent(Protocol):
    """A credential issuer agent. ``pushes_events`` says whether it sends webhooks."""

    pushes_events: bool

    async def create_invitation(self) -> Invitation: ...

    async def connection_status(self, invitation: Invitation) -> ConnectionStatus: ...

    async def send_offer(self, connection_id: str, attributes: dict[str, str]) -> str:
        """Offer a credential with ``attributes`` over the connection; returns the exchange id."""
        ...

    async def exchange_state(self, exchange_id: str) -> ExchangeState: ...

    async def abandon(self, exchange_id: str, reason: str) -> None:
        """Best effort: tell the agent an exchange is over (e.g. expired)."""
        ...

    async def ready(self) -> bool: ...

    async def aclose(self) -> None: ...
