"""Real ACA-Py agents for the test session: an issuer, an auto-accepting holder, a decliner."""

from __future__ import annotations

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


async def decline(wallet: LocalAgent, reason: str = "declined by user") -> None:
    exchange_id = await pending_offer(wallet)
    async with httpx.AsyncClient(base_url=wallet.admin_url, timeout=10) as client:
        response = await client.post(
            f"/issue-credential-2.0/records/{exchange_id}/problem-report",
            json={"description": reason},
        )
        response.raise_for_status()


async def accept(wallet: LocalAgent) -> None:
    exchange_id = await pending_offer(wallet)
    async with httpx.AsyncClient(base_url=wallet.admin_url, timeout=10) as client:
        response = await client.post(
            f"/issue-credential-2.0/records/{exchange_id}/send-request", json={}
        )
        response.raise_for_status()
