"""The app's CPU time per issuance flow: many flows against one worker, SQLite and PostgreSQL.

One flow is what a browser and its wallet cause (``bench.concurrent_flows`` describes it):
``GET /en`` (a new session, its invitation and QR page) → the page's websocket → the wallet
fetches the short invitation URL ``GET /i/<id>`` with ``Accept: application/json`` (Aries RFC
0434, "URL shortening") → the agent's ``connections`` webhook → ``POST /name`` → the agent's
``issue_credential_v2_0`` ``done`` webhook → ``accepted`` on the websocket (and the outbox
delivering ``credential.accepted``). The agent is ``bench.fake_acapy`` (no added latency, its own
process; it posts the ``connections`` webhook 200 ms after ``create-invitation``, time for the
wallet's fetch, and ``done`` 50 ms after ``send-offer``).

What is measured: the CPU time (user + system, ``/proc/<pid>/stat``, every thread of the
process: the event loop, aiosqlite's threads, ``asyncio.to_thread``'s pool; system time
includes the kernel's loopback TCP work of every write) the one hypercorn worker used over
``--flows`` flows, ``--parallel`` at a time, divided by the number of flows. The worker's
background loops (sweeper, outbox dispatcher) run meanwhile and are counted too. The bench's
own clients and the stub share the 2 cores, so figures move with the machine's load (printed);
both are built to cost little (``bench.portal``: raw asyncio HTTP/1.1 and websocket clients on
uvloop; ``bench.stub_server``), and the CPU each used is printed per flow next to the app's.
Nothing is pinned to a core (``taskset``).
Target: ≤ 8 ms per flow on each database (issue 12).

Run alone: ``python -m bench.flow_cpu [--flows 300] [--parallel 4] [--database sqlite]``;
``--profile DIR`` records the worker with py-spy (``raw`` collapsed stacks per database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import portal
from bench.common import (
    CLK_TCK,
    WEBHOOK_KEY,
    AppServer,
    Check,
    CpuMeter,
    Report,
    StubProcess,
    app_env,
    heading,
    scratch_database,
)
from bench.http1 import Client

TARGET_MS = 8.0
# The stub connects this long after its invitation was created, the wallet having fetched it.
CONNECT_AFTER = 0.2
QUIET = 0.05
SHORT_LINK = re.compile(rb'href="https?://[^"/]+(/i/[A-Za-z0-9_-]+)"')


async def wallet_fetch(http: Client, page: bytes) -> bool:
    """The wallet scans the QR code: ``GET`` the short URL as RFC 0434 says a wallet does.

    ``False`` when it came too late (404: the stub, which plays the holder on its own clock,
    had connected already, so the invitation was used up)."""
    found = SHORT_LINK.search(page)
    if found is None:
        return True  # an app without short invitation URLs
    path = found.group(1).decode()
    response = await http.get(path, [("Accept", "application/json")])
    if response.status not in (200, 404):
        raise RuntimeError(f"GET {path} → {response.status}: {response.text[:200]}")
    return response.status == 200


async def flow(http: Client, base_url: str) -> bool:
    """One browser's and its wallet's whole flow; ``False`` if the wallet's fetch was late."""
    response = await http.get("/en", [("Accept", "*/*")])
    if response.status != 200:
        raise RuntimeError(f"GET /en → {response.status}: {response.text[:200]}")
    visitor = portal.visitor_of(response)
    fetched = asyncio.ensure_future(wallet_fetch(http, response.body))
    page = await portal.open_page(base_url, visitor)
    try:
        in_time = await fetched
        await page.reach("connected")
        await portal.submit_name(http, visitor)
        await page.reach("accepted")
    finally:
        await page.close()
    return in_time


async def flows(base_url: str, count: int, parallel: int) -> int:
    """Run ``count`` flows, ``parallel`` at a time; how many wallet fetches came too late."""
    async with portal.client(base_url, 2 * parallel + 2) as http:
        results = await portal.bounded(parallel, [flow(http, base_url) for _ in range(count)])
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} of {count} flows failed, e.g. {failures[0]!r}")
    return results.count(False)


def measure(database: str, count: int, parallel: int, profile: Path | None) -> dict[str, Any]:
    """CPU ms per flow of one worker on ``database`` (after a warm-up of 20 flows)."""
    with scratch_database(database) as url:
        app = AppServer(f"flow-cpu-{database}", {})
        stub = StubProcess(
            "bench.fake_acapy",
            *("--webhook-url", f"{app.url}/webhooks", "--webhook-key", WEBHOOK_KEY),
            *("--connect-after", str(CONNECT_AFTER), "--accept-after", str(QUIET)),
        )
        spy: subprocess.Popen[bytes] | None = None
        try:
            stub.start()
            app.env = app_env(url, agent="acapy", acapy_admin_url=stub.url)
            app.start()
            (worker,) = app.worker_pids
            uvloop.run(flows(app.url, 20, parallel))
            if profile is not None:
                spy = start_profiler(worker, profile / f"flow_cpu_{database}.txt")
            assert stub.proc is not None
            portal.settle_heap()
            before, loop_before = cpu_split(worker), cpu_split(worker, thread=worker)
            others = CpuMeter({"stub": stub.proc.pid, "load generator": os.getpid()})
            started = time.perf_counter()
            with others:
                late = uvloop.run(flows(app.url, count, parallel))
            wall = time.perf_counter() - started
            user, system = (b - a for a, b in zip(before, cpu_split(worker), strict=True))
            loop = sum(cpu_split(worker, thread=worker)) - sum(loop_before)
        finally:
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(30)
            app.stop()
            stub.stop()
    used = user + system
    per_flow = 1000 / count
    return {
        "flows": count, "parallel": parallel, "cpu_s": used, "wall_s": wall,
        "cpu_ms_per_flow": used * per_flow, "user_ms_per_flow": user * per_flow,
        "system_ms_per_flow": system * per_flow, "loop_ms_per_flow": loop * per_flow,
        "threads_ms_per_flow": (used - loop) * per_flow, "late_wallet_fetches": late,
        "stub_ms_per_flow": others.used["stub"] * per_flow,
        "load_generator_ms_per_flow": others.used["load generator"] * per_flow,
    }  # fmt: skip


def cpu_split(pid: int, thread: int | None = None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, or of one of its threads (the main thread
    runs the event loop)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--pid", str(pid), "--rate", "250", "--threads", "--nonblocking",
               "--format", "raw", "--output", str(output)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return process


def run(
    databases: tuple[str, ...] = ("sqlite", "postgresql"),
    count: int = 300,
    parallel: int = 4,
    profile: Path | None = None,
) -> Report:
    heading(f"app CPU per issuance flow: {count} flows, {parallel} at a time, one worker")
    report = Report("flow_cpu")
    for database in databases:
        figures = measure(database, count, parallel, profile)
        report.data[database] = figures
        f = figures
        print(
            f"  {database}: {f['cpu_s']:.2f} s of worker CPU over {count} flows "
            f"({f['wall_s']:.1f} s wall) = {f['cpu_ms_per_flow']:.2f} ms per flow (user "
            f"{f['user_ms_per_flow']:.2f}, system {f['system_ms_per_flow']:.2f}): event loop "
            f"{f['loop_ms_per_flow']:.2f} ms, other threads (database driver, to_thread) "
            f"{f['threads_ms_per_flow']:.2f} ms; late wallet fetches: {f['late_wallet_fetches']}; "
            f"meanwhile the stub {f['stub_ms_per_flow']:.2f} ms and the load generator "
            f"{f['load_generator_ms_per_flow']:.2f} ms per flow"
        )
        report.checks.append(
            Check(f"app CPU per flow, {database}", figures["cpu_ms_per_flow"], TARGET_MS, "ms")
        )
    report.save()
    report.print_checks()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles into this folder")
    args = parser.parse_args()
    databases = tuple(args.database or ("sqlite", "postgresql"))
    run(databases, args.flows, args.parallel, args.profile)


if __name__ == "__main__":
    main()
