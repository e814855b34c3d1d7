"""The whole flow against a real ACA-Py issuer and wallet, over real HTTP and websockets."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from issuer import create_app
from issuer.issuance.agents.local import LocalAgent, free_port
from issuer.services import services_of
from tests.support.acapy import (
    Agents,
    WebhookSink,
    accept,
    decline,
    issuer_connection_active,
    issuer_record,
    receive_invitation,
    wallet_record,
)
from tests.support.portal import (
    JSON,
    ORIGIN,
    cookie_header,
    delete_sessions,
    live,
    name_form,
    next_snapshot,
    next_state,
    open_session,
    stored,
    wait_until,
)
from tests.support.servers import InProcessServer

pytestmark = pytest.mark.acapy


@pytest.fixture
async def settings(agents: Agents, database_url: str) -> AsyncIterator[dict[str, Any]]:
    """App settings for the real issuer; the database is emptied after the test."""
    yield {
        # Plain-HTTP clients drop Secure cookies; development keeps them sendable.
        "env": "development",
        "database_url": database_url,
        "secret_key": secrets.token_urlsafe(32),
        "allowed_origins": ORIGIN,
        **agents.app_overrides(),
    }
    await delete_sessions(database_url)


@pytest.fixture
async def portal(agents: Agents, settings: dict[str, Any]) -> AsyncIterator[InProcessServer]:
    """The app on the port the issuer sends its webhooks to."""
    async with InProcessServer(create_app(settings), agents.webhook_port) as server:
        yield server


async def offer_on_wallet(agents: Agents, exchange_id: str, wallet: LocalAgent) -> dict[str, Any]:
    """Wait until the issuer's offer ``exchange_id`` reached ``wallet``; its record there."""
    thread_id = (await issuer_record(agents, exchange_id))["thread_id"]
    return await wait_until(  # type: ignore[no-any-return]
        lambda: wallet_record(wallet, thread_id), what="the offer to reach the wallet"
    )


async def issuer_state_is(agents: Agents, exchange_id: str, *states: str) -> dict[str, Any] | None:
    record = await issuer_record(agents, exchange_id)
    return record if record["state"] in states else None


async def walk_to_offered(
    app: Any, client: httpx.AsyncClient, ws: Any, wallet: Any, session_id: str, csrf: str
) -> None:
    """The wallet scans the QR code, the form is posted: the page hears each step to offered."""
    assert await next_state(ws) == "invited"
    row = await stored(app, session_id)
    await receive_invitation(wallet, row.invitation_url)
    assert await next_state(ws) == "connected"
    response = await client.post("/name", data=name_form(csrf), headers=JSON)
    assert response.status_code == 200, response.text
    assert await next_state(ws) == "offered"


async def test_wallet_accepts_and_the_page_hears_every_step(
    portal: InProcessServer, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as client:
        session_id, csrf = await open_session(client)
        async with live(portal.port, session_id, cookie_header(client)) as ws:
            await walk_to_offered(portal.app, client, ws, agents.holder, session_id, csrf)
            assert await next_state(ws) == "accepted"
        assert (await client.get("/loading/")).json() == {"status": "accepted"}


async def test_wallet_declines_and_the_reason_is_stored(
    portal: InProcessServer, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as client:
        session_id, csrf = await open_session(client)
        async with live(portal.port, session_id, cookie_header(client)) as ws:
            await walk_to_offered(portal.app, client, ws, agents.decliner, session_id, csrf)
            exchange_id = (await stored(portal.app, session_id)).exchange_id
            offer = await offer_on_wallet(agents, exchange_id, agents.decliner)
            assert offer["state"] == "offer-received"
            await decline(agents.decliner, "not my name", offer["cred_ex_id"])
            snapshot = await next_snapshot(ws)
            assert snapshot["state"] == "declined"
            assert snapshot["error"] == "issuance-abandoned: not my name"
        row = await stored(portal.app, session_id)
        assert row.state == "declined" and row.finished_at is not None
        assert row.error == "issuance-abandoned: not my name"  # ACA-Py's error_msg, verbatim
        record = await issuer_record(agents, exchange_id)
        assert record["state"] == "abandoned"
        assert (await client.get("/loading/")).json() == {"status": "not accepted"}


async def test_unanswered_offer_expires_and_the_agent_is_told(
    agents: Agents, settings: dict[str, Any]
) -> None:
    offer_timeout = 1.5
    app = create_app({**settings, "offer_timeout": offer_timeout, "sweep_interval": 0.2})
    async with (
        InProcessServer(app, agents.webhook_port) as portal,
        httpx.AsyncClient(base_url=portal.url) as client,
    ):
        session_id, csrf = await open_session(client)
        async with live(portal.port, session_id, cookie_header(client)) as ws:
            assert await next_state(ws) == "invited"
            row = await stored(app, session_id)
            await receive_invitation(agents.decliner, row.invitation_url)
            assert await next_state(ws) == "connected"
            posted = time.monotonic()
            response = await client.post("/name", data=name_form(csrf), headers=JSON)
            assert response.status_code == 200, response.text
            assert await next_state(ws) == "offered"
            exchange_id = (await stored(app, session_id)).exchange_id
            offer = await offer_on_wallet(agents, exchange_id, agents.decliner)
            # The wallet got it and says nothing (on a slow machine the expiry's problem report
            # may have withdrawn it by the time the wallet's record is read).
            assert offer["state"] in {"offer-received", "abandoned"}
            snapshot = await next_snapshot(ws, timeout=offer_timeout + 3)
            waited = time.monotonic() - posted
            assert snapshot["state"] == "expired" and snapshot["error"] == "timeout"
            assert waited >= offer_timeout, f"expired after {waited:.2f}s"
        # The sweeper sent a problem report on the issuer's record: it is abandoned too, with
        # ACA-Py's "created problem report" wording (a wallet's report reads "issuance-abandoned").
        record = await wait_until(
            lambda: issuer_state_is(agents, exchange_id, "abandoned"),
            timeout=5,
            what="the issuer's record to be abandoned",
        )
        assert record["error_msg"] == "created problem report: offer expired"
        # ... and the report reached the wallet, whose offer is withdrawn.
        thread_id = record["thread_id"]

        async def wallet_abandoned() -> dict[str, Any] | None:
            held = await wallet_record(agents.decliner, thread_id)
            return held if held and held["state"] == "abandoned" else None

        held = await wait_until(wallet_abandoned, timeout=5, what="the wallet's offer to end")
        assert held["error_msg"] == "issuance-abandoned: offer expired"
        # The "abandoned" webhook that followed does not turn the expired session into a decline.
        row = await stored(app, session_id)
        assert row.state == "expired" and row.error == "timeout"


async def test_missed_webhooks_are_reconciled_from_the_agent(
    agents: Agents, settings: dict[str, Any]
) -> None:
    port = free_port()
    assert port != agents.webhook_port  # no webhook ever reaches this app: a sink takes them
    app = create_app({**settings, "sweep_interval": 0.2})
    sink = WebhookSink()
    async with (
        InProcessServer(sink.app, agents.webhook_port),
        InProcessServer(app, port) as portal,
        httpx.AsyncClient(base_url=portal.url) as client,
    ):
        session_id, csrf = await open_session(client)
        row = await stored(app, session_id)
        # The wallet scans the code while the page has no websocket open (e.g. a dropped one).
        await receive_invitation(agents.holder, row.invitation_url)
        await wait_until(
            lambda: issuer_connection_active(agents, row.invitation_msg_id),
            what="the issuer's connection to become active",
        )
        async with live(portal.port, session_id, cookie_header(client)) as ws:
            assert await next_state(ws) == "invited"  # the stored state: nobody told us
            # The (re)connect catch-up reads the agent at once (the sweeper would take >= 10 s).
            assert await next_state(ws, timeout=3) == "connected"
            response = await client.post("/name", data=name_form(csrf), headers=JSON)
            assert response.status_code == 200, response.text
            assert await next_state(ws) == "offered"
            exchange_id = (await stored(app, session_id)).exchange_id
            await wait_until(
                lambda: issuer_state_is(agents, exchange_id, "done"),
                what="the wallet to accept at the agent",
            )
            assert (await stored(app, session_id)).state == "offered"
            # The sweeper's reconciliation pass (run now: on its timer it waits for sessions
            # that have been quiet for at least 10 s) reads the record back.
            assert await services_of(app).issuance.reconcile_stale(0.0) == 1
            assert await next_state(ws) == "accepted"
        assert (await client.get("/loading/")).json() == {"status": "accepted"}
        # The issuer did send both events; they went elsewhere.
        await sink.wait_for("connections", "invitation_msg_id", row.invitation_msg_id, "active")
        await sink.wait_for("issue_credential_v2_0", "cred_ex_id", exchange_id, "done")


async def test_flow_finished_while_no_app_ran_is_reconciled_by_the_next_one(
    agents: Agents, settings: dict[str, Any]
) -> None:
    # Off the webhook port, so the outcome can only be learnt by reading the agent's record.
    sink = WebhookSink()
    async with InProcessServer(sink.app, agents.webhook_port):
        async with (
            InProcessServer(create_app(settings), free_port()) as first,
            httpx.AsyncClient(base_url=first.url) as client,
        ):
            session_id, csrf = await open_session(client)
            row = await stored(first.app, session_id)
            await receive_invitation(agents.holder, row.invitation_url)
            await wait_until(
                lambda: issuer_connection_active(agents, row.invitation_msg_id),
                what="the issuer's connection to become active",
            )
            # Posting the form reconciles the still "invited" session before offering.
            response = await client.post("/name", data=name_form(csrf), headers=JSON)
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "offered"
            cookie = cookie_header(client)
            exchange_id = (await stored(first.app, session_id)).exchange_id
        # The first app stopped; the auto-accepting wallet finishes while no portal runs.
        await wait_until(
            lambda: issuer_state_is(agents, exchange_id, "done"),
            what="the wallet to accept at the agent",
        )
        second = create_app(settings)  # same database and secret key: the cookie stays valid
        async with InProcessServer(second, free_port()) as portal:
            async with live(portal.port, session_id, cookie) as ws:
                assert await next_state(ws) == "offered"
                # The (re)connect catch-up, not the sweeper.
                assert await next_state(ws, timeout=3) == "accepted"
            async with httpx.AsyncClient(base_url=portal.url, headers={"Cookie": cookie}) as client:
                assert (await client.get("/loading/")).json() == {"status": "accepted"}
        await sink.wait_for("issue_credential_v2_0", "cred_ex_id", exchange_id, "done")


async def test_a_reconnecting_page_first_gets_the_stored_state(
    portal: InProcessServer, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as client:
        session_id, csrf = await open_session(client)
        cookie = cookie_header(client)
        async with live(portal.port, session_id, cookie) as ws:
            assert await next_state(ws) == "invited"
            row = await stored(portal.app, session_id)
            await receive_invitation(agents.decliner, row.invitation_url)
            assert await next_state(ws) == "connected"
        # The socket dropped; the step it missed happens meanwhile.
        response = await client.post("/name", data=name_form(csrf), headers=JSON)
        assert response.status_code == 200, response.text
        async with live(portal.port, session_id, cookie) as ws:
            first = await next_snapshot(ws)
            row = await stored(portal.app, session_id)
            assert first == row.snapshot()
            assert first["state"] == "offered" and first["version"] == 3
            # ... and the live feed goes on from there.
            offer = await offer_on_wallet(agents, row.exchange_id, agents.decliner)
            await accept(agents.decliner, offer["cred_ex_id"])
            snapshot = await next_snapshot(ws)
            assert snapshot["state"] == "accepted" and snapshot["version"] == 4
