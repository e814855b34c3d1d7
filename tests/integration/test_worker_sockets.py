"""Two hypercorn workers share the connections: each listens on its own ``SO_REUSEPORT`` socket
(``issuer.web.server``), so the kernel spreads them, instead of the first worker to wake
taking all. Which worker answered is read from the JSON access log (its ``pid``)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from pathlib import Path

from issuer.issuance.agents.local import free_port
from tests.support.servers import ServerProcess

CONNECTIONS = 256  # the busiest worker's share: mean 50 %, 60 % is 3.2 standard deviations


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (IPv4), from /proc/net/tcp."""
    found = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
            found += 1
    return found


async def requests_on_open_connections(port: int, request_ids: list[str]) -> None:
    """Open one connection per id (the kernel picks each one's worker now), then send a
    request on each and read its status line."""
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in request_ids)
    )
    try:
        for (_reader, writer), request_id in zip(opened, request_ids, strict=True):
            writer.write(
                b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
                b"X-Request-ID: " + request_id.encode() + b"\r\n\r\n"
            )
        statuses = await asyncio.gather(*(reader.readline() for reader, _ in opened))
        assert all(s.startswith(b"HTTP/1.1 200") for s in statuses), statuses
    finally:
        for _reader, writer in opened:
            writer.close()


def test_two_workers_each_take_a_share_of_the_connections(sqlite_url: str, tmp_path: Path) -> None:
    env = {
        "ISSUER_ENV": "test", "ISSUER_DATABASE_URL": sqlite_url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32), "ISSUER_AGENT": "",
        "ISSUER_LOG_FORMAT": "json", "ISSUER_LOG_LEVEL": "INFO",
    }  # fmt: skip
    port = free_port()
    server = ServerProcess(port, env, tmp_path / "server.log", workers=2).start()
    try:
        deadline = time.monotonic() + 30
        while listening_sockets(port) < 2:  # the second worker may still be starting
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        assert listening_sockets(port) == 2  # the master's socket is bound, never listening
        ids = [f"share-{i}" for i in range(CONNECTIONS)]

        asyncio.run(requests_on_open_connections(port, ids))
    finally:
        server.stop()
    answered: dict[str, int] = {}
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["logger"] == "issuer.access" and entry["request_id"] in ids:
                answered[entry["request_id"]] = entry["pid"]
    assert len(answered) == CONNECTIONS
    shares = Counter(answered.values())
    assert len(shares) == 2, shares
    assert max(shares.values()) <= 0.6 * CONNECTIONS, shares
