"""The original's connect/issue REST API adapter, against a local stub of that API.

The app and the stub are real HTTP servers in this event loop; the browser side is httpx and
real websockets. The adapter sends no events, so every state change here comes from the
session's poller reading the stub.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import httpx
import pytest

from issuer import create_app
from issuer.issuance.agents.local import free_port
from issuer.services import services_of
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
)
from tests.support.rest_stub import RestStub
from tests.support.servers import InProcessServer

T = TypeVar("T")
CRED_DEF = "did:sov:AgencyIssuer:3:CL:1234:education"
AGENT_TIMEOUT = 0.5
POLL = {"poll_initial_delay": 0.05, "poll_backoff": 1.5, "poll_max_delay": 0.3}


@pytest.fixture
async def stub() -> AsyncIterator[RestStub]:
    async with RestStub().serve() as served:
        yield served


@pytest.fixture
async def portal(stub: RestStub, database_url: str) -> AsyncIterator[InProcessServer]:
    app = create_app(
        {
            "env": "development",  # plain-HTTP clients drop Secure cookies
            "database_url": database_url,
            "secret_key": secrets.token_urlsafe(32),
            "allowed_origins": ORIGIN,
            "agent": "rest",
            "rest_connection_url": stub.url,
            "rest_issuer_url": stub.url,
            "rest_credential_definition_id": CRED_DEF,
            "agent_timeout": AGENT_TIMEOUT,
            **POLL,
        }
    )
    async with InProcessServer(app, free_port()) as server:
        yield server
    await delete_sessions(database_url)


async def bounded(call: Awaitable[T], seconds: float = 3) -> T:
    """Nothing may hang: fail the test if ``call`` takes longer than ``seconds``."""
    try:
        return await asyncio.wait_for(call, seconds)
    except TimeoutError:
        raise AssertionError(f"no answer within {seconds}s") from None


def polls_within(window: float) -> int:
    """How many times one poller asks the agent in ``window`` seconds, by the backoff schedule."""
    delay, elapsed, polls = POLL["poll_initial_delay"], 0.0, 0
    while elapsed + delay <= window:
        elapsed += delay
        polls += 1
        delay = min(delay * POLL["poll_backoff"], POLL["poll_max_delay"])
    return polls


async def polled(stub: RestStub, route: str, times: int = 2) -> None:
    """Wait until the poller has asked ``route`` ``times`` more times.

    The poller asks one request at a time, so once the second request arrived, the answer to the
    first one — sent after the caller changed the stub — has been fully handled.
    """
    target = stub.counts[route] + times
    await stub.wait_for(lambda counts: counts[route] >= target)


async def offered_session(
    portal: InProcessServer, stub: RestStub, client: httpx.AsyncClient, session_id: str, ws: Any
) -> Any:
    """Walk a session to ``offered``, watching ``ws``; returns the stored row."""
    assert await next_state(ws) == "invited"
    row = await stored(portal.app, session_id)
    stub.connect(row.connection_id)
    assert await next_state(ws) == "connected"
    csrf = client.headers["X-CSRF-Token"]
    response = await client.post("/name", data=name_form(csrf), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "offered"
    assert await next_state(ws) == "offered"
    return await stored(portal.app, session_id)


async def browser(portal: InProcessServer, stack: AsyncExitStack) -> tuple[httpx.AsyncClient, str]:
    """A browser that opened the start page; its client carries the page's CSRF token."""
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=portal.url, timeout=5))
    session_id, csrf = await open_session(client)
    client.headers["X-CSRF-Token"] = csrf
    return client, session_id


async def test_whole_flow_over_the_websocket(portal: InProcessServer, stub: RestStub) -> None:
    async with AsyncExitStack() as stack:
        client, session_id = await browser(portal, stack)
        row = await stored(portal.app, session_id)
        assert stub.counts["invitation"] == 1
        assert row.invitation_url == f"https://agent.example/invitation?c_i={row.connection_id}"
        ws = await stack.enter_async_context(live(portal.port, session_id, cookie_header(client)))
        row = await offered_session(portal, stub, client, session_id, ws)
        assert stub.offers == [
            {
                "connectionId": row.connection_id,
                "credentialDefinitionId": CRED_DEF,
                "attributes": {"Prename": "Ada", "Surname": "Lovelace", "Institution": "ETH"},
                "userId": "Anonymous",
            }
        ]
        assert (await client.get("/loading/")).json() == {"status": "not accepted"}
        await polled(stub, "state", 1)  # asked while IN_PROGRESS: still offered
        stub.finish(row.exchange_id, "DONE")
        assert await next_state(ws) == "accepted"
        assert (await client.get("/loading/")).json() == {"status": "accepted"}
        assert (await client.get("/check_connection/")).json() == {"status": "connected"}
        row = await stored(portal.app, session_id)
        assert row.state == "accepted" and row.finished_at is not None


async def test_only_explicit_final_states_end_the_session(
    portal: InProcessServer, stub: RestStub
) -> None:
    async with AsyncExitStack() as stack:
        client, session_id = await browser(portal, stack)
        ws = await stack.enter_async_context(live(portal.port, session_id, cookie_header(client)))
        row = await offered_session(portal, stub, client, session_id, ws)
        # The original took any answer but "IN_PROGRESS", errors included, as accepted.
        stub.failing = True
        await polled(stub, "state")
        stub.failing = False
        assert (await stored(portal.app, session_id)).state == "offered"
        for answer in ("SOMETHING_ELSE", "", {"state": "DONE"}, None):
            stub.finish(row.exchange_id, answer)
            await polled(stub, "state")
            assert (await stored(portal.app, session_id)).state == "offered", answer
        assert (await client.get("/loading/")).json() == {"status": "not accepted"}
        stub.finish(row.exchange_id, "DECLINED")
        snapshot = await next_snapshot(ws)  # the next change is the decline, nothing before it
        assert snapshot["state"] == "declined" and snapshot["error"] == "DECLINED"
        assert (await client.get("/loading/")).json() == {"status": "not accepted"}


async def test_one_poller_per_session_shared_by_every_listener(
    portal: InProcessServer, stub: RestStub
) -> None:
    window = 1.5
    pollers = services_of(portal.app).pollers
    async with AsyncExitStack() as stack:
        client, session_id = await browser(portal, stack)
        cookie = cookie_header(client)
        started = time.monotonic()
        sockets = [
            await stack.enter_async_context(live(portal.port, session_id, cookie)) for _ in range(5)
        ]
        for ws in sockets:
            assert await next_state(ws) == "invited"
        for _ in range(20):  # an old page polling the legacy route as fast as it can
            response = await client.get("/check_connection/")
            assert response.json() == {"status": "not connected"}
        await asyncio.sleep(max(0.0, window - (time.monotonic() - started)))  # the window
        asked = stub.counts["connection"]
        window = max(window, time.monotonic() - started)  # a slow machine's set-up took longer
        # One poller on the backoff schedule (7 asks in 1.5 s), not one per listener (5 sockets
        # x 7 + 20 legacy polls); +1 for scheduling jitter.
        assert 1 <= asked <= polls_within(window) + 1, asked
        assert len(pollers) == 1
        poller = pollers.task(session_id)
        assert poller is not None

        row = await stored(portal.app, session_id)
        stub.connect(row.connection_id)
        for ws in sockets:
            assert await next_state(ws) == "connected"
        csrf = client.headers["X-CSRF-Token"]
        response = await client.post("/name", data=name_form(csrf), headers=JSON)
        assert response.status_code == 200, response.text
        for ws in sockets:
            assert await next_state(ws) == "offered"
        stub.finish((await stored(portal.app, session_id)).exchange_id, "DONE")
        for ws in sockets:
            assert await next_state(ws) == "accepted"
        await bounded(poller, 2)  # the poller ends with the session
        assert len(pollers) == 0
        asked = dict(stub.counts)
        for _ in range(20):  # listeners of a finished session do not restart the polling
            assert (await client.get("/loading/")).json() == {"status": "accepted"}
            assert len(pollers) == 0 and pollers.task(session_id) is None
        assert dict(stub.counts) == asked


async def test_slow_agent_gives_fast_503s(portal: InProcessServer, stub: RestStub) -> None:
    async with AsyncExitStack() as stack:
        # Two sessions while the agent is fine: one connected, one whose wallet connected
        # at the agent but that nobody has asked about yet.
        connected, connected_id = await browser(portal, stack)
        cookie = cookie_header(connected)
        ws = await stack.enter_async_context(live(portal.port, connected_id, cookie))
        assert await next_state(ws) == "invited"
        stub.connect((await stored(portal.app, connected_id)).connection_id)
        assert await next_state(ws) == "connected"
        invited, invited_id = await browser(portal, stack)
        stub.connect((await stored(portal.app, invited_id)).connection_id)

        stub.slow(30)  # far beyond agent_timeout
        for client in (connected, invited):
            started = time.monotonic()
            form = name_form(client.headers["X-CSRF-Token"])
            response = await bounded(client.post("/name", data=form, headers=JSON))
            assert time.monotonic() - started < AGENT_TIMEOUT + 1
            assert response.status_code == 503, response.text
            body = response.json()
            assert body.keys() == {"success", "error", "message"}
            assert body["success"] is False and body["error"] == "agent_unavailable"
            assert body["message"] and response.headers["Retry-After"]
        assert stub.counts["offer"] == 1 and stub.counts["connection"] >= 1
        row = await stored(portal.app, connected_id)
        assert row.state == "connected" and row.attributes is None  # free to try again

        started = time.monotonic()
        page = await bounded(connected.get("/en"))
        assert time.monotonic() - started < AGENT_TIMEOUT + 1
        assert page.status_code == 503 and 'id="retry"' in page.text
        ready = await bounded(connected.get("/health/ready"))
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": "ok", "agent": "down"}

        stub.release()  # the agent is back: the same form goes through
        assert (await bounded(connected.get("/health/ready"))).status_code == 200
        form = name_form(connected.headers["X-CSRF-Token"])
        response = await bounded(connected.post("/name", data=form, headers=JSON))
        assert response.status_code == 200, response.text
        assert await next_state(ws) == "offered"
