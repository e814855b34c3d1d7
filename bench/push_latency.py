"""Push latency: from the agent's final webhook to the websocket message, 1/100/1000 sessions.

What is measured: the time from sending ``POST /webhooks/topic/issue_credential_v2_0/``
``{"cred_ex_id", "state": "done"}`` (as ACA-Py does, with ``X-API-Key``) until that session's
websocket receives the ``accepted`` snapshot — webhook handling, the conditional ``UPDATE``, the
broker's fan-out and the websocket send, over real loopback sockets.

How: the app runs as real hypercorn processes (``hypercorn.toml``, ``ISSUER_ENV=development``)
against ``bench.fake_acapy`` (no added latency, posts no webhooks). A session is opened as a
browser does (``GET /`` with its own cookie, then the websocket with origin + cookie) and driven
to ``offered`` (the ``connections`` webhook, then ``POST /name`` with the page's CSRF token). The
server closes a websocket when its session ends, so "N open sessions" are N − 1 idle sessions left
at ``offered`` with their websockets open, plus one fresh session per sample that is pushed to
``accepted`` and timed; ``--samples`` (100) samples per N, one at a time. The ids the app keeps to
itself (invitation message id, exchange id) are read from its database.

Two topologies:
(a) SQLite, one hypercorn worker: in-process fan-out (``issuer.realtime.broker.Broker``);
    target p99 ≤ 50 ms.
(b) PostgreSQL, two hypercorn processes on one database: websockets held on process B, webhooks
    posted to process A, so every push crosses ``LISTEN/NOTIFY``
    (``issuer.realtime.broker.PostgresBroker``); target p99 ≤ 100 ms.

Memory: ``VmRSS`` of the hypercorn *worker* process holding the websockets (hypercorn's parent
only supervises), at rest and with 1000 open websockets; target ≤ 150 MB per worker. Then, on
SQLite, RSS per websocket on a fresh worker with and without permessage-deflate (which every
browser offers and hypercorn always accepts).

Extra figures without a target: with 1000 open sessions, ``--burst`` (200) more sessions whose
final webhooks arrive at once (how latency grows when many holders accept in the same instant),
and the app's CPU time per final webhook.

Run alone: ``python -m bench.push_latency [--sizes 1,100,1000] [--topologies sqlite,postgresql]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvloop

from bench import portal
from bench.common import (
    AppServer,
    Check,
    CpuMeter,
    Report,
    RowLookup,
    StubProcess,
    app_env,
    fmt,
    heading,
    raise_nofile,
    rss_mb,
    scratch_database,
    summarize,
)

TARGET_P99_MS = {"sqlite": 50.0, "postgresql": 100.0}
TARGET_RSS_MB = 150.0
SETUP_CONCURRENCY = 20
# Page loads are CPU-bound (~40 ms each, mostly the QR code) and, on SQLite, more than a few at
# once starve writers into "database is locked" (see the report): open visitors gently.
PAGE_CONCURRENCY = 4


@dataclass
class Open:
    visitor: portal.Visitor
    page: portal.LivePage
    exchange_id: str = ""


@dataclass
class Topology:
    """Where visitors and websockets live (``front``) and where the agent's webhooks go."""

    kind: str
    front: AppServer
    hooks: AppServer
    lookup: RowLookup
    results: dict[str, Any] = field(default_factory=dict)

    async def __aenter__(self) -> Topology:
        self.http = portal.client(self.front.url, connections=SETUP_CONCURRENCY + 5)
        self.hook_http = portal.client(self.hooks.url, connections=SETUP_CONCURRENCY + 5)
        # Visitors may start on either process (one secret key); more processes, more pages/s.
        self.page_http = [self.http] if self.hooks is self.front else [self.http, self.hook_http]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()
        await self.hook_http.aclose()
        await self.lookup.close()

    async def open_sessions(self, n: int) -> list[Open]:
        pages = [portal.open_session(self.page_http[i % len(self.page_http)]) for i in range(n)]
        visitors = await portal.bounded(PAGE_CONCURRENCY * len(self.page_http), pages)
        raise_first(visitors)

        async def socket(visitor: portal.Visitor) -> Open:
            page = await portal.open_page(self.front.url, visitor)
            await page.reach("invited")
            return Open(visitor, page)

        opened = await portal.bounded(SETUP_CONCURRENCY, [socket(v) for v in visitors])
        raise_first(opened)
        return opened

    async def drive_to_offered(self, sessions: list[Open]) -> None:
        ids = [s.visitor.session_id for s in sessions]
        invitations = await self.lookup.fetch("invitation_msg_id", ids)

        async def drive(s: Open) -> None:
            body = {
                "connection_id": str(uuid.uuid4()),
                "state": "active",
                "rfc23_state": "completed",
                "invitation_msg_id": invitations[s.visitor.session_id],
            }
            await portal.webhook(self.hook_http, "connections", body)
            await s.page.reach("connected")
            await portal.submit_name(self.http, s.visitor)
            await s.page.reach("offered")

        raise_first(await portal.bounded(SETUP_CONCURRENCY, [drive(s) for s in sessions]))
        exchanges = await self.lookup.fetch("exchange_id", ids)
        for s in sessions:
            s.exchange_id = exchanges[s.visitor.session_id]

    async def push(self, s: Open) -> float:
        """Post the final webhook for ``s``; seconds until its websocket says ``accepted``."""
        received = asyncio.create_task(s.page.reach("accepted", timeout=15))
        await asyncio.sleep(0)
        started = time.perf_counter()
        body = {"cred_ex_id": s.exchange_id, "state": "done", "role": "issuer"}
        await portal.webhook(self.hook_http, "issue_credential_v2_0", body)
        return await received - started

    def front_rss(self) -> float:
        return max(rss_mb(pid) for pid in self.front.worker_pids)


def raise_first(results: list[Any]) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(results)} failed; first: {errors[0]!r}")


async def measure(
    topo: Topology, sizes: list[int], samples: int, burst: int
) -> list[portal.Visitor]:
    """Latency with N open sessions for each N in ``sizes``; returns the idle visitors.

    The server closes a websocket once its session is over, so N open sessions are N − 1 idle
    ones (``offered``, never finished) plus the one being measured, opened afresh per sample.
    """
    out = topo.results
    await cycles(topo, 3)  # warm-up: first requests, lazily created clients and pools
    out["rss_rest_mb"] = topo.front_rss()
    idle: list[Open] = []
    for n in sorted(sizes):
        started = time.perf_counter()
        more = await topo.open_sessions(n - 1 - len(idle))
        await topo.drive_to_offered(more)
        idle += more
        out[f"setup_{n}_s"] = time.perf_counter() - started

        def note_rss(n: int = n) -> None:
            out[f"rss_{n}_ws_mb"] = topo.front_rss()

        latencies = await cycles(topo, samples, on_open=note_rss)
        out[f"n{n}"] = summarize([latency for _, latency in latencies])
        out[f"samples_{n}"] = [[round(t, 3), round(latency * 1000, 2)] for t, latency in latencies]
        print(f"  {topo.kind:10} {n:5} open: {fmt(out[f'n{n}'])}", flush=True)
    if burst and max(sizes) >= 1000:
        extra = await topo.open_sessions(burst)
        await topo.drive_to_offered(extra)
        await measure_burst(topo, extra, f"burst_{max(sizes)}")
    await portal.close_all([s.page for s in idle])
    return [s.visitor for s in idle]


async def measure_burst(topo: Topology, sessions: list[Open], key: str) -> None:
    """Final webhooks for all ``sessions`` at once; also the app's CPU time per webhook."""
    pids = {"hooks": topo.hooks.worker_pids[0], "front": topo.front.worker_pids[0]}
    with CpuMeter(pids) as meter:
        latencies = await asyncio.gather(*(topo.push(s) for s in sessions))
    cpu = sum(meter.used.values()) if topo.hooks is not topo.front else meter.used["hooks"]
    topo.results[key] = summarize(latencies)
    topo.results[f"{key}_app_cpu_ms_per_webhook"] = cpu * 1000 / len(sessions)
    print(
        f"  {topo.kind:10} + {len(sessions)} final webhooks at once: "
        f"{fmt(topo.results[key])}; app CPU {cpu * 1000 / len(sessions):.1f} ms per webhook"
    )


async def cycles(
    topo: Topology, count: int, on_open: Callable[[], None] | None = None
) -> list[tuple[float, float]]:
    """Open, drive and push ``count`` sessions one at a time: (time since start, latency) s."""
    started = time.perf_counter()
    latencies = []
    for i in range(count):
        [session] = await topo.open_sessions(1)
        if i == 0 and on_open is not None:
            on_open()
        await topo.drive_to_offered([session])
        pushed = time.perf_counter() - started
        latencies.append((pushed, await topo.push(session)))
        await session.page.close()
    return latencies


async def websocket_memory(env: dict[str, str], visitors: list[portal.Visitor]) -> dict[str, float]:
    """KB of worker RSS per open websocket on a fresh worker, permessage-deflate on and off.

    Every browser offers permessage-deflate and hypercorn always accepts it, keeping a zlib
    compressor per connection; the same client without the offer shows what that costs.
    """
    per_socket = {}
    for compression in ("deflate", None):
        server = AppServer(f"push-memory-{compression or 'plain'}", env)
        await asyncio.to_thread(server.start)
        try:
            pid = server.worker_pids[0]
            before = rss_mb(pid)
            opens = [portal.open_page(server.url, v, compression=compression) for v in visitors]
            pages = await portal.bounded(SETUP_CONCURRENCY, opens)
            raise_first(pages)
            await asyncio.gather(*(p.reach("invited") for p in pages))
            await asyncio.sleep(1)  # catch-up read-backs
            per_socket[compression or "none"] = (rss_mb(pid) - before) * 1024 / len(pages)
            await portal.close_all(pages)
        finally:
            await asyncio.to_thread(server.stop)
    return per_socket


def run_topology(
    kind: str, stub: StubProcess, sizes: list[int], samples: int, burst: int
) -> dict[str, Any]:
    with scratch_database(kind) as url:
        env = app_env(url, agent="acapy", acapy_admin_url=stub.url)
        servers = [AppServer(f"push-{kind}-a", env)]
        if kind == "postgresql":
            servers.append(AppServer(f"push-{kind}-b", env))
        try:
            for server in servers:
                server.start()
            hooks, front = servers[0], servers[-1]

            async def go() -> dict[str, Any]:
                async with Topology(kind, front, hooks, RowLookup(url)) as topo:
                    visitors = await measure(topo, sizes, samples, burst)
                if kind == "sqlite" and len(visitors) >= 100:
                    kb = await websocket_memory(env, visitors)
                    topo.results["kb_per_websocket"] = kb
                    print(
                        f"  RSS per websocket on a fresh worker ({len(visitors)} sockets): "
                        f"{kb['deflate']:.0f} KB with permessage-deflate, "
                        f"{kb['none']:.0f} KB without"
                    )
                return topo.results

            results = uvloop.run(go())
            results["front_worker_pids"] = front.worker_pids
            return results
        finally:
            for server in servers:
                server.stop()


def run(
    sizes: tuple[int, ...] = (1, 100, 1000),
    topologies: tuple[str, ...] = ("sqlite", "postgresql"),
    samples: int = 100,
    burst: int = 200,
) -> Report:
    heading("push latency: final webhook → websocket message")
    raise_nofile()
    report = Report("push_latency")
    stub = StubProcess("bench.fake_acapy").start()
    try:
        for kind in topologies:
            results = run_topology(kind, stub, list(sizes), samples, burst)
            report.data[kind] = results
            for n in sizes:
                p99 = results[f"n{n}"].get("p99")
                label = f"{kind}: p99 push latency, {n} open session(s)"
                report.checks.append(Check(label, p99, TARGET_P99_MS[kind], "ms"))
            if "rss_1000_ws_mb" in results:
                label = f"{kind}: websocket worker's RSS with 1000 open websockets"
                report.checks.append(Check(label, results["rss_1000_ws_mb"], TARGET_RSS_MB, "MB"))
            if "kb_per_websocket" in results:
                report.data["kb_per_websocket"] = results["kb_per_websocket"]
            rss = ", ".join(
                f"{k[4:-6]} ws {v:.0f} MB" for k, v in results.items() if k.endswith("_ws_mb")
            )
            print(f"  {kind}: websocket worker RSS: at rest {results['rss_rest_mb']:.0f} MB, {rss}")
        report.data["stub"] = stub.stats()
    finally:
        stub.stop()
    report.notes.append(
        f"per N: N − 1 idle sessions hold their websockets open while {samples} fresh sessions are "
        "opened, driven to 'offered' and pushed one at a time; PostgreSQL: websockets on "
        "process B, webhooks posted to process A"
    )
    report.save()
    report.print_checks()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--topologies", default="sqlite,postgresql")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    run(
        tuple(int(n) for n in args.sizes.split(",")),
        tuple(args.topologies.split(",")),
        args.samples,
        args.burst,
    )


if __name__ == "__main__":
    main()
