"""Many workers, many hosts: two portal processes on one PostgreSQL database.

Host A listens where the real ACA-Py issuer sends its webhooks; host B serves the browser (the
start page and the live websocket) and never hears from the agent. Every state change reaches
B's websocket through PostgreSQL ``LISTEN/NOTIFY`` only, and B's LISTEN connection survives
being killed: it reconnects and replays what it missed.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from issuer.db import asyncpg_dsn
from issuer.issuance.agents.local import free_port
from tests.support.acapy import Agents, receive_invitation
from tests.support.portal import (
    JSON,
    ORIGIN,
    cookie_header,
    live,
    name_form,
    next_state,
    open_session,
    wait_until,
)
from tests.support.servers import SHORT_GRACE, ServerProcess, process_tree, stop_gracefully

pytestmark = [pytest.mark.acapy, pytest.mark.postgres]

# Shared by both hosts, so a session cookie signed by one is valid on the other.
SECRET_KEY = secrets.token_urlsafe(32)
# The LISTEN connection's last statement: the LISTEN itself, then its 15 s keep-alive ping.
LISTEN_QUERIES = ("LISTEN%", "SELECT 1")
# The broker pings only every 15 s: noticing a killed backend faster proves the termination
# listener fired.
NOTICE_WITHIN = 5.0


class Hosts:
    def __init__(self, a: ServerProcess, b: ServerProcess, dsn: str) -> None:
        self.a, self.b, self.dsn = a, b, dsn
        self.pg_port = urlsplit(dsn).port or 5432
        self.session_ids: list[str] = []


@pytest.fixture(scope="module")
def hosts(
    agents: Agents, postgresql_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    """Host A on the agent's webhook port, host B on another port; both on one database."""
    logs = tmp_path_factory.mktemp("workers")
    env = {f"ISSUER_{key.upper()}": str(value) for key, value in agents.app_overrides().items()}
    env.update(
        ISSUER_ENV="development",  # plain-HTTP clients drop Secure cookies
        ISSUER_SECRET_KEY=SECRET_KEY,
        ISSUER_DATABASE_URL=postgresql_url,
        ISSUER_ALLOWED_ORIGINS=ORIGIN,
        ISSUER_LOG_LEVEL="INFO",
    )
    a = ServerProcess(agents.webhook_port, env, logs / "a.log", args=SHORT_GRACE)
    b = ServerProcess(free_port(), env, logs / "b.log", args=SHORT_GRACE)
    try:
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(server.start) for server in (a, b)]:
                future.result()
        yield Hosts(a, b, asyncpg_dsn(postgresql_url))
    finally:
        stop_gracefully(a)
        stop_gracefully(b)


@pytest.fixture(scope="module")
async def pg(hosts: Hosts) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the hosts' database (removes this module's sessions at the end)."""
    conn = await asyncpg.connect(hosts.dsn, timeout=10)
    try:
        yield conn
    finally:
        await conn.execute("DELETE FROM issuance_sessions WHERE id = ANY($1)", hosts.session_ids)
        await conn.close(timeout=5)


def client_ports(pids: list[int], server_port: int) -> set[int]:
    """Local ports of the TCP connections these processes hold to ``server_port`` (Linux)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


async def listen_backend(pg: asyncpg.Connection, hosts: Hosts, server: ServerProcess) -> int:
    """The PostgreSQL backend pid of ``server``'s LISTEN connection (waits for it to exist)."""
    assert server.proc is not None

    async def probe() -> int | None:
        ports = client_ports(process_tree(server.proc.pid), hosts.pg_port)
        rows = await pg.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND client_port = ANY($1::int[]) AND (query LIKE $2 OR query = $3)",
            list(ports),
            *LISTEN_QUERIES,
        )
        # None while (re)connecting, or while a killed backend is still on its way out.
        return int(rows[0]["pid"]) if len(rows) == 1 else None

    return int(await wait_until(probe, timeout=10, what="exactly one LISTEN connection"))


async def state_in_db(pg: asyncpg.Connection, session_id: str) -> str:
    return str(await pg.fetchval("SELECT state FROM issuance_sessions WHERE id = $1", session_id))


async def invitation_url(pg: asyncpg.Connection, session_id: str) -> str:
    url = await pg.fetchval(
        "SELECT invitation_url FROM issuance_sessions WHERE id = $1", session_id
    )
    assert url, "the session has no invitation"
    return str(url)


@contextmanager
def frozen(server: ServerProcess) -> Iterator[None]:
    """Stop (SIGSTOP) every process of ``server`` and resume it (SIGCONT) on the way out."""
    assert server.proc is not None
    pids = process_tree(server.proc.pid)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def log_count(server: ServerProcess, text: str) -> int:
    return server.log_path.read_text(errors="replace").count(text)


def assert_no_webhooks(hosts: Hosts) -> None:
    """Every webhook went to host A; host B only served the browser (per the access logs)."""
    assert log_count(hosts.a, "POST /webhooks/topic/") > 0
    b_log = hosts.b.log_path.read_text(errors="replace").splitlines()
    assert any("GET /" in line and "/health" not in line for line in b_log), "B logs no requests"
    assert not [line for line in b_log if "/webhooks" in line]


async def start_on_b(hosts: Hosts, client: httpx.AsyncClient) -> tuple[str, str]:
    session_id, csrf = await open_session(client)
    hosts.session_ids.append(session_id)
    return session_id, csrf


async def submit_on_a(hosts: Hosts, b_client: httpx.AsyncClient, csrf: str) -> None:
    """Post the name form to host A with the cookie host B issued."""
    async with httpx.AsyncClient(
        base_url=hosts.a.url, cookies=b_client.cookies, timeout=15
    ) as client:
        response = await client.post("/name", data=name_form(csrf), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "offered"


async def test_a_webhook_on_one_host_reaches_the_websocket_on_another(
    hosts: Hosts, pg: asyncpg.Connection, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=hosts.b.url, timeout=15) as client:
        session_id, csrf = await start_on_b(hosts, client)
        async with live(hosts.b.port, session_id, cookie_header(client)) as ws:
            assert await next_state(ws) == "invited"
            await receive_invitation(agents.holder, await invitation_url(pg, session_id))
            assert await next_state(ws, 15) == "connected"
            await submit_on_a(hosts, client, csrf)
            assert await next_state(ws, 15) == "offered"
            assert await next_state(ws, 15) == "accepted"
        assert (await client.get("/loading/")).json() == {"status": "accepted"}
    assert_no_webhooks(hosts)


async def test_a_killed_listen_connection_is_noticed_and_replaced(
    hosts: Hosts, pg: asyncpg.Connection, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=hosts.b.url, timeout=15) as client:
        session_id, csrf = await start_on_b(hosts, client)
        async with live(hosts.b.port, session_id, cookie_header(client)) as ws:
            assert await next_state(ws) == "invited"
            backend = await listen_backend(pg, hosts, hosts.b)
            lost_before = log_count(hosts.b, "LISTEN connection lost")
            assert await pg.fetchval("SELECT pg_terminate_backend($1)", backend)

            async def noticed() -> bool:
                return log_count(hosts.b, "LISTEN connection lost") > lost_before

            await wait_until(noticed, timeout=NOTICE_WITHIN, what="B to notice the lost LISTEN")
            assert await listen_backend(pg, hosts, hosts.b) != backend
            await receive_invitation(agents.holder, await invitation_url(pg, session_id))
            assert await next_state(ws, 15) == "connected"
            await submit_on_a(hosts, client, csrf)
            assert await next_state(ws, 15) == "offered"
            assert await next_state(ws, 15) == "accepted"
    assert_no_webhooks(hosts)


async def test_changes_missed_while_the_listen_connection_was_down_are_replayed(
    hosts: Hosts, pg: asyncpg.Connection, agents: Agents
) -> None:
    """B sleeps through its LISTEN backend's death and the ``connected`` NOTIFY: on waking it
    reconnects and replays the stored state, so the websocket still sees ``connected``."""
    async with httpx.AsyncClient(base_url=hosts.b.url, timeout=15) as client:
        session_id, csrf = await start_on_b(hosts, client)
        async with live(hosts.b.port, session_id, cookie_header(client)) as ws:
            assert await next_state(ws) == "invited"
            backend = await listen_backend(pg, hosts, hosts.b)
            url = await invitation_url(pg, session_id)
            with frozen(hosts.b):
                assert await pg.fetchval("SELECT pg_terminate_backend($1)", backend)
                await receive_invitation(agents.holder, url)

                async def connected() -> bool:
                    return await state_in_db(pg, session_id) == "connected"

                await wait_until(connected, timeout=15, what="host A to apply the webhook")
            # Only the replay can deliver it: the NOTIFY went out while B had no listener.
            assert await next_state(ws, NOTICE_WITHIN) == "connected"
            await submit_on_a(hosts, client, csrf)
            assert await next_state(ws, 15) == "offered"
            assert await next_state(ws, 15) == "accepted"
    assert_no_webhooks(hosts)
