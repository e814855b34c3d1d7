"""Pusher fan-out: one event to 1000 subscribed Pusher-protocol clients, memory per connection,
and entity events per second through the outbox to the broker.

What is measured, on SQLite (one worker: in-process fan-out) and PostgreSQL (one worker; every
message crosses ``LISTEN/NOTIFY``), the app running as in production (``hypercorn.toml``):

- ``--clients`` (1000) protocol-7 websocket clients (the ``websockets`` library, which offers
  permessage-deflate as browsers do) subscribe to one public channel; ``--events`` (50) events
  are triggered one at a time through the signed Events API (``POST /apps/<id>/events``), and
  for each the time from sending the request until the *last* client has it (and the p50/p99 of
  all clients) is recorded. Target: p99 to the last client ≤ 250 ms on SQLite.
- Memory: ``VmRSS`` of the worker before and after the clients connected and subscribed, per
  connection. Target ≤ 200 KiB per connection (hypercorn's permessage-deflate context dominates).
- Throughput: ``--entity-events`` (2000) entity events of one user are written to the outbox in
  transactions of 100 by the app's own services (as use cases write them), while one client is
  subscribed to that user's private channel (its signature made with the app's secret); the rate
  at which they arrive there is the outbox → broker → websocket rate.

Next to these, ``bench/results/push_latency.json`` (the issuance websocket, if it was run) is
quoted: p99 of one push with 1000 open sessions.

Run: ``python -m bench.pusher_fanout [--clients 1000] [--events 50] [--database sqlite,postgresql]``
(figures printed and saved to ``bench/results/pusher_fanout.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import uvloop
import websockets

from bench.accounts_login import start_app
from bench.common import (
    RESULTS,
    SECRET_KEY,
    Check,
    Report,
    fmt,
    heading,
    raise_nofile,
    rss_mb,
    scratch_database,
    summarize,
)

TARGET_LAST_P99_MS = 250.0
TARGET_KIB_PER_CONNECTION = 200.0


def credentials() -> tuple[str, str, str]:
    from issuer.config import Settings

    return Settings(env="production", secret_key=SECRET_KEY).pusher_credentials


def signed_event(app_id: str, key: str, secret: str, body: bytes) -> dict[str, str]:
    """The Events API's query (Pusher's HTTP API signature)."""
    params = {
        "auth_key": key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0",
        "body_md5": hashlib.md5(body, usedforsecurity=False).hexdigest(),
    }  # fmt: skip
    signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    text = f"POST\n/apps/{app_id}/events\n{signed}"
    params["auth_signature"] = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return params


class Arrivals:
    """When each client got each event; ``done[n]`` is set once every client has event n."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.count: dict[int, int] = {}
        self.done: dict[int, asyncio.Event] = {}

    def event(self, n: int) -> asyncio.Event:
        return self.done.setdefault(n, asyncio.Event())

    def arrived(self, n: int) -> None:
        self.count[n] = self.count.get(n, 0) + 1
        if self.count[n] == self.clients:
            self.event(n).set()


class Client:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.arrivals: dict[int, float] = {}
        self.socket_id = ""
        self.board: Arrivals | None = None

    async def run(self) -> None:
        async for raw in self.connection:
            message = json.loads(raw)
            if message.get("event") == "tick":
                n = json.loads(message["data"])["n"]
                self.arrivals[n] = time.perf_counter()
                if self.board is not None:
                    self.board.arrived(n)


async def connect(url: str, channel: str, auth: str | None = None) -> Client:
    connection = await websockets.connect(url, max_size=None, open_timeout=60)
    hello = json.loads(await connection.recv())
    client = Client(connection)
    client.socket_id = json.loads(hello["data"])["socket_id"]
    data: dict[str, str] = {"channel": channel}
    if auth is not None:
        data["auth"] = auth
    await connection.send(json.dumps({"event": "pusher:subscribe", "data": data}))
    answer = json.loads(await connection.recv())
    assert answer["event"] == "pusher_internal:subscription_succeeded", answer
    return client


async def fan_out(base: str, ws: str, args: argparse.Namespace, worker: int) -> dict[str, Any]:
    app_id, key, secret = credentials()
    url = f"{ws}/app/{key}?protocol=7&client=bench&version=1"
    rss_before = rss_mb(worker)
    clients: list[Client] = []
    for start in range(0, args.clients, 100):
        clients += await asyncio.gather(
            *(connect(url, "fanout") for _ in range(min(100, args.clients - start)))
        )
    await asyncio.sleep(1)  # let the worker settle before reading its memory
    rss_after = rss_mb(worker)
    board = Arrivals(len(clients))
    for client in clients:
        client.board = board
    readers = [asyncio.create_task(c.run()) for c in clients]
    last: list[float] = []
    every: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for n in range(args.events):
            body = json.dumps({"name": "tick", "channel": "fanout", "data": json.dumps({"n": n})})
            raw = body.encode()
            sent = time.perf_counter()
            params = signed_event(app_id, key, secret, raw)
            answer = await http.post(
                f"/apps/{app_id}/events", content=raw, params=params,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            answer.raise_for_status()
            await asyncio.wait_for(board.event(n).wait(), 30)  # every client has it
            times = [(c.arrivals[n] - sent) for c in clients]
            last.append(max(times))
            every.extend(times)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(c.connection.close() for c in clients), return_exceptions=True)
    return {
        "last": summarize(last), "all": summarize(every),
        "rss_before_mb": rss_before, "rss_after_mb": rss_after,
        "kib_per_connection": (rss_after - rss_before) * 1024 / args.clients,
    }  # fmt: skip


async def outbox_rate(url: str, ws: str, count: int) -> dict[str, Any]:
    """Entity events written by the app's services reach the user's channel: events per second."""
    from issuer import create_app
    from issuer.accounts.models import User
    from issuer.services import services_of

    _, key, secret = credentials()
    app = create_app({"env": "test", "secret_key": SECRET_KEY, "database_url": url,
                      "argon2_memory_kib": 1024, "argon2_time_cost": 1})  # fmt: skip
    services = services_of(app)
    try:
        async with services.db.transaction() as session:
            user = User(username=f"bench-{time.time_ns()}", username_key=f"bench-{time.time_ns()}")
            session.add(user)
            await session.flush()
            user_id, entity = user.id, user.entity_id.hex
        channel = f"private-session-{entity}"
        wsurl = f"{ws}/app/{key}?protocol=7&client=bench&version=1"
        connection = await websockets.connect(wsurl, max_size=None)
        socket_id = json.loads(json.loads(await connection.recv())["data"])["socket_id"]
        auth = hmac.new(secret.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256)
        await connection.send(json.dumps({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": f"{key}:{auth.hexdigest()}"}}))  # fmt: skip
        assert "succeeded" in json.loads(await connection.recv())["event"]
        started = time.perf_counter()
        for start in range(0, count, 100):
            async with services.db.transaction() as session:
                for _ in range(min(100, count - start)):
                    await services.outbox.event(
                        session, "session.opened", {"entity_id": entity}, user_id=user_id
                    )
        written = time.perf_counter() - started
        seen = 0
        while seen < count:
            message = json.loads(await asyncio.wait_for(connection.recv(), 60))
            if message.get("event") == "create":
                seen += 1
        elapsed = time.perf_counter() - started
        await connection.close()
        return {"events": count, "seconds": elapsed, "per_second": count / elapsed,
                "write_seconds": written}  # fmt: skip
    finally:
        await services.close()


def issuance_reference() -> str | None:
    path = RESULTS / "push_latency.json"
    if not path.exists():
        return None
    body = json.loads(path.read_text())
    found = [c for c in body.get("checks", []) if "p99" in c.get("label", "")]
    return "; ".join(f"{c['label']}: {c['value']:.1f} {c['unit']}" for c in found) or None


def run_database(database: str, args: argparse.Namespace) -> dict[str, Any]:
    heading(f"pusher_fanout · {database}")
    with scratch_database(database) as url:
        app = start_app(
            f"pusher_fanout_{database}", url, rate_limits_enabled="false",
            pusher_max_connections=args.clients + 100,
        )  # fmt: skip
        try:
            ws = app.url.replace("http://", "ws://")
            (worker,) = app.worker_pids
            figures = asyncio.run(fan_out(app.url, ws, args, worker))
            print(f"  to the last of {args.clients} clients: {fmt(figures['last'])}")
            print(f"  to each client:                 {fmt(figures['all'])}")
            print(
                f"  worker RSS {figures['rss_before_mb']:.1f} → {figures['rss_after_mb']:.1f} MB: "
                f"{figures['kib_per_connection']:.0f} KiB per connection"
            )
            figures["outbox"] = asyncio.run(outbox_rate(url, ws, args.entity_events))
            rate = figures["outbox"]
            print(
                f"  outbox → broker → websocket: {rate['per_second']:.0f} entity events/s "
                f"({rate['events']} in {rate['seconds']:.2f} s)"
            )
        finally:
            app.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--entity-events", type=int, default=2000)
    parser.add_argument("--database", default="sqlite,postgresql")
    args = parser.parse_args()
    raise_nofile()
    uvloop.install()
    report = Report("pusher_fanout")
    for database in [d.strip() for d in args.database.split(",") if d.strip()]:
        figures = run_database(database, args)
        report.data[database] = figures
        report.checks.append(Check(f"{database}: p99 to the last of {args.clients} clients",
                                   figures["last"]["p99"], TARGET_LAST_P99_MS, "ms"))  # fmt: skip
        report.checks.append(Check(f"{database}: memory per connection",
                                   figures["kib_per_connection"], TARGET_KIB_PER_CONNECTION,
                                   "KiB"))  # fmt: skip
    reference = issuance_reference()
    if reference:
        report.notes.append(f"issuance websocket (bench.push_latency): {reference}")
    report.print_checks()
    print(f"  saved {report.save()}")


if __name__ == "__main__":
    main()
