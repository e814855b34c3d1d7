"""The original portal's connect/issue REST API (CONTRACTS.md §1).

It sends no events, so sessions are polled (see ``issuance.pollers``). Only explicit final states
of a process count: the original took any answer but ``IN_PROGRESS``, errors included, as
accepted; here an unknown state stays pending and is logged.
"""

from __future__ import annotations

import logging

from issuer.issuance.agents.base import (
    AgentUnavailable,
    ConnectionStatus,
    ExchangeState,
    ExchangeStatus,
    Invitation,
)
from issuer.issuance.agents.http import call, make_client

log = logging.getLogger(__name__)


class RestAgent:
    pushes_events = False

    def __init__(
        self,
        connection_url: str,
        issuer_url: str,
        credential_definition_id: str,
        *,
        timeout: float,
        accepted: frozenset[str],
        declined: frozenset[str],
        failed: frozenset[str],
    ) -> None:
        self._connections = make_client(connection_url, timeout)
        self._issuer = make_client(issuer_url, timeout)
        self._credential_definition_id = credential_definition_id
        self._final = {
            **{s: ExchangeStatus.ACCEPTED for s in accepted},
            **{s: ExchangeStatus.DECLINED for s in declined},
            **{s: ExchangeStatus.FAILED for s in failed},
        }

    async def create_invitation(self) -> Invitation:
        body = await call(self._connections, "POST", "/connection/invitation")
        try:
            return Invitation(
                url=str(body["invitationUrl"]),
                invitation_msg_id=None,
                connection_id=str(body["connectionId"]),
            )
        except (KeyError, TypeError) as exc:
            raise AgentUnavailable(
                "the agent's invitation has no invitationUrl/connectionId"
            ) from exc

    async def connection_status(self, invitation: Invitation) -> ConnectionStatus:
        if invitation.connection_id is None:
            return ConnectionStatus(None, active=False)
        body = await call(self._connections, "GET", f"/connection/{invitation.connection_id}")
        return ConnectionStatus(invitation.connection_id, active=body == "established")

    async def send_offer(self, connection_id: str, attributes: dict[str, str]) -> str:
        payload = {
            "connectionId": connection_id,
            "credentialDefinitionId": self._credential_definition_id,
            # The original API names attributes with a capital first letter (Prename, …).
            "attributes": {k[:1].upper() + k[1:]: v for k, v in attributes.items()},
            "userId": "Anonymous",
        }
        body = await call(self._issuer, "POST", "/issue/process", json=payload)
        try:
            return str(body["processId"])
        except (KeyError, TypeError) as exc:
            raise AgentUnavailable("the agent's answer has no processId") from exc

    async def exchange_state(self, exchange_id: str) -> ExchangeState:
        body = await call(self._issuer, "GET", f"/issue/process/{exchange_id}/state")
        state = str(body).upper() if isinstance(body, str) else ""
        status = self._final.get(state)
        if status is None:
            if state != "IN_PROGRESS":
                log.warning("unknown process state %r for %s; still pending", body, exchange_id)
            return ExchangeState(ExchangeStatus.PENDING, state or None)
        return ExchangeState(status, state)

    async def abandon(self, exchange_id: str, reason: str) -> None:
        return None  # The original API has no way to withdraw an offer.

    async def ready(self) -> bool:
        # The API has no health route: any HTTP answer from both hosts means they are up.
        for client in (self._connections, self._issuer):
            try:
                await client.get("/")
            except Exception:
                return False
        return True

    async def aclose(self) -> None:
        await self._connections.aclose()
        await self._issuer.aclose()
