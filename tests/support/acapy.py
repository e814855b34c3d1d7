"""Real ACA-Py agents for the test session: an issuer, an auto-accepting holder, a decliner."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from issuer.issuance.agents.local import LocalAgent, LocalAgentSpec, free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-test-key"
WEBHOOK_KEY = "hook-key"


def acapy_binary() -> str:
    return os.environ.get("ISSUER_ACAPY_BIN") or str(ROOT / ".venv-acapy" / "bin" / "aca-py")


@dataclass
class Agents:
    """``webhook_port``: the issuer posts webhooks to ``127.0.0.1:webhook_port/webhooks``."""

    issuer: LocalAgent
    holder: LocalAgent
    decliner: LocalAgent
    webhook_port: int

    def app_overrides(self) -> dict[str, Any]:
        return {
            "agent": "acapy",
            "acapy_admin_url": self.issuer.admin_url,
            "acapy_admin_api_key": ADMIN_KEY,
            "webhook_api_key": WEBHOOK_KEY,
        }

    def stop(self) -> None:
        for agent in (self.issuer, self.holder, self.decliner):
            agent.stop_sync()


def start_agents() -> Agents:
    """Start the three agents in parallel (~1.5 s each)."""
    binary = acapy_binary()
    if not Path(binary).exists():
        raise RuntimeError(f"ACA-Py is not installed at {binary}: run `make acapy`")
    webhook_port = free_port()
    issuer = LocalAgent(
        LocalAgentSpec(
            "issuer",
            webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks#{WEBHOOK_KEY}",
            admin_api_key=ADMIN_KEY,
        ),
        binary,
    )
    holder = LocalAgent(LocalAgentSpec("holder", holder=True), binary)
    decliner = LocalAgent(LocalAgentSpec("decliner", holder=True, auto_respond_offer=False), binary)
    agents = Agents(issuer, holder, decliner, webhook_port)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(a.start_sync) for a in (issuer, holder, decliner)]
        errors = [f.exception() for f in futures]
    if any(errors):
        agents.stop()
        raise RuntimeError(f"ACA-Py did not start: {errors}")
    return agents


def invitation_message(invitation_url: str) -> dict[str, Any]:
    encoded = parse_qs(urlsplit(invitation_url).query)["oob"][0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))  # type: ignore[no-any-return]


async def receive_invitation(wallet: LocalAgent, invitation_url: str) -> None:
    """The wallet scans the QR code: it receives the invitation and connects."""
    async with httpx.AsyncClient(base_url=wallet.admin_url, timeout=10) as client:
        response = await client.post(
            "/out-of-band/receive-invitation", json=invitation_message(invitation_url)
        )
        response.raise_for_status()


async def pending_offer(wallet: LocalAgent) -> str:
    """The wallet-side exchange id of the newest offer waiting for an answer."""
    async with httpx.AsyncClient(base_url=wallet.admin_url, timeout=10) as client:
        response = await client.get(
            "/issue-credential-2.0/records", params={"state": "offer-received"}
        )
        response.raise_for_status()
        records = [r["cred_ex_record"] for r in response.json()["results"]]
    if not records:
        raise LookupError("no offer waiting")
    return str(max(records, key=lambda r: r["created_at"])["cred_ex_id"])


async def decline(
    wallet: LocalAgent, reason: str = "declined by user", exchange_id: str | None = None
) -> None:
    exchange_id = exchange_id or await pending_offer(wallet)
    async with httpx.AsyncClient(base_url=wallet.admin_url, timeout=10) as client:
        response = await client.post(
            f"/issue-credential-2.0/records/{exchange_id}/problem-report",
            json={"description": reason},
        )
        response.raise_for_status()


async def accept(wallet: LocalAgent, exchange_id: str | None = None) -> None:
    exchange_id = exchange_id or await pending_offer(wallet)
    async with httpx.AsyncClient(base_url=wallet.admin_url, timeout=10) as client:
        response = await client.post(
            f"/issue-credential-2.0/records/{exchange_id}/send-request", json={}
        )
        response.raise_for_status()


async def admin_get(agent: LocalAgent, path: str, **params: str) -> Any:
    """GET from an agent's admin API (with the admin key if it has one); None on 404."""
    headers = {"X-API-Key": agent.spec.admin_api_key} if agent.spec.admin_api_key else {}
    async with httpx.AsyncClient(base_url=agent.admin_url, headers=headers, timeout=10) as client:
        response = await client.get(path, params=params)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


async def issuer_record(agents: Agents, exchange_id: str) -> dict[str, Any]:
    """The issuer's ``cred_ex_record`` for ``exchange_id``."""
    body = await admin_get(agents.issuer, f"/issue-credential-2.0/records/{exchange_id}")
    assert body is not None, f"the issuer has no record {exchange_id}"
    return body["cred_ex_record"]  # type: ignore[no-any-return]


async def issuer_connection_active(agents: Agents, invitation_msg_id: str) -> bool:
    body = await admin_get(agents.issuer, "/connections", invitation_msg_id=invitation_msg_id)
    return any(r.get("state") == "active" for r in body["results"])


async def wallet_record(wallet: LocalAgent, thread_id: str) -> dict[str, Any] | None:
    """The wallet's side of the exchange on ``thread_id`` (None until its offer arrived)."""
    body = await admin_get(wallet, "/issue-credential-2.0/records", thread_id=thread_id)
    results = body["results"]
    return results[0]["cred_ex_record"] if results else None


class WebhookSink:
    """Takes the issuer's webhooks (on ``agents.webhook_port``) while no portal may see them.

    Answering them stops ACA-Py from retrying them 10 s later into whichever app listens then.
    """

    def __init__(self) -> None:
        from quart import Quart, request

        self.events: list[tuple[str, dict[str, Any]]] = []
        self._arrived = asyncio.Condition()
        self.app = Quart("webhook_sink")

        @self.app.post("/webhooks/topic/<topic>/")
        async def webhook(topic: str) -> dict[str, bool]:
            async with self._arrived:
                self.events.append((topic, await request.get_json()))
                self._arrived.notify_all()
            return {"ok": True}

    def states(self, topic: str, key: str, value: str) -> list[str]:
        """The states the issuer reported on ``topic`` for the record whose ``key`` is ``value``."""
        return [str(b.get("state")) for t, b in self.events if t == topic and b.get(key) == value]

    async def wait_for(
        self, topic: str, key: str, value: str, state: str, timeout: float = 5
    ) -> None:
        """Wait until the issuer reported ``state`` for that record."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: state in self.states(topic, key, value)), timeout
            )
