"""Completed issuance flows per second: our portal against 000's, at 200 ms per agent call.

What is measured (issue 12): ``flows`` browsers start the whole flow at the same moment, on each
server in turn; the figure is completed flows divided by the wall time until the last one
finished. Target: ours ≥ 20× the reference.

* **ours** — hypercorn with ``hypercorn.toml`` (one worker, ``ISSUER_ENV=production``) on
  PostgreSQL, agent ``acapy`` against ``bench.fake_acapy`` (which posts the webhooks); a
  browser's flow is ``bench.concurrent_flows.flow``'s: ``GET /en``, the websocket, ``POST /name``,
  the pushed states.
* **theirs** — ``bench.legacy.portal`` under gunicorn ``gthread``, 2 workers × 4 threads (000's
  ``gunicorn.conf.py``), against ``bench.fake_rest`` (the agency's connect/issue API it called);
  a browser's flow is what its pages did: ``GET /``, the QR image, ``/check_connection/`` polled
  2 s after each answer until ``connected``, ``GET /name``, ``POST /name``, ``/loading/`` polled
  likewise until ``accepted``, ``GET /success``.

Both sides get the same cheap browsers (``bench.portal``: a raw asyncio HTTP/1.1 client and a
raw websocket client on uvloop, ~1 ms of CPU per flow where httpx and ``websockets`` cost ~20 ms),
so the load generator, which shares the 2 cores with the server it drives (nothing is pinned to
a core), costs both servers alike and little. Each visitor keeps its own cookie. On both, a
``GET`` that meets a kept-alive connection the server has just closed (gunicorn keeps one 2 s,
hypercorn 5 s; flows under load idle longer) is sent again once, as browsers do; a ``POST`` is
not (it may have been done), so such a failure counts against its server.

Both stubs add the same ``latency`` to every agent call and play a holder who scans and accepts
``latency`` seconds after the invitation / the offer, so each flow needs four agent round trips
on either server. Also printed: one flow alone on each, and CPU ms per completed flow of each
server's processes, of its agent stub, of the load generator (this process) and, for ours, of
the PostgreSQL server (000's portal keeps no database); and the agent calls each made.

Run alone: ``python -m bench.parity_portal [--flows 500] [--latency 0.2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import uvloop

from bench import concurrent_flows, portal
from bench.common import (
    WEBHOOK_KEY,
    AppServer,
    Check,
    CpuMeter,
    Report,
    StubProcess,
    app_env,
    heading,
    postgres_cpu,
    postmaster_pid,
    raise_nofile,
    scratch_database,
    tree_cpu,
)
from bench.http1 import Client, Response
from bench.legacy.server import GunicornServer

TARGET = 20.0
POLL_PERIOD = 2.0  # the original page's
FLOW_TIMEOUT = 600.0
LEGACY_COOKIE = "session"
FORM_TYPE = "application/x-www-form-urlencoded"


class LegacyBrowser:
    """One visitor of the 000 portal: its own session cookie, over the shared client."""

    def __init__(self, http: Client) -> None:
        self.http = http
        self.cookie = ""

    async def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Response:
        """``GET`` (resent once on a closed kept-alive connection) or ``POST`` a form."""
        headers = [("Accept", "*/*")] + ([("Cookie", self.cookie)] if self.cookie else [])
        if method == "POST":
            body = urlencode(form or {}).encode()
            headers.append(("Origin", self.http.origin))
            answer = await self.http.post(path, body, FORM_TYPE, headers)
        else:
            answer = await self.http.get(path, headers)
        if answer.status != 200:
            raise RuntimeError(f"{method} {path} → {answer.status}: {answer.text[:200]}")
        for value in answer.header_list("set-cookie"):
            if value.startswith(f"{LEGACY_COOKIE}="):
                self.cookie = value.split(";", 1)[0]
        return answer

    async def poll(self, path: str, want: str) -> None:
        for _ in range(int(FLOW_TIMEOUT / POLL_PERIOD)):
            await asyncio.sleep(POLL_PERIOD)
            if (await self.request("GET", path)).json()["status"] == want:
                return
        raise RuntimeError(f"{path} never answered {want}")


async def legacy_flow(http: Client, base_url: str) -> float:
    """One browser's whole flow on the 000 portal; returns its duration in seconds."""
    started = time.perf_counter()
    browser = LegacyBrowser(http)
    page = await browser.request("GET", "/")
    image = re.search(rb"src='(/static/qr/[^']+)'", page.body)
    if image is None:
        raise RuntimeError("the start page has no QR image")
    await browser.request("GET", image.group(1).decode())
    await browser.poll("/check_connection/", "connected")
    await browser.request("GET", "/name")
    await browser.request("POST", "/name", portal.FORM)
    await browser.poll("/loading/", "accepted")
    await browser.request("GET", "/success")
    return time.perf_counter() - started


Flow = Callable[[Client, str], Awaitable[float]]


async def all_at_once(
    base_url: str, flows: int, flow: Flow
) -> tuple[float, list[float], Counter[str]]:
    """``flows`` flows started together: wall time, completed durations, failures by kind."""
    async with portal.client(base_url, timeout=FLOW_TIMEOUT) as http:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(flow(http, base_url) for _ in range(flows)), return_exceptions=True
        )
        wall = time.perf_counter() - started
    durations = [r for r in results if isinstance(r, float)]
    failures = Counter(
        concurrent_flows.failure_kind(r) for r in results if isinstance(r, BaseException)
    )
    return wall, durations, failures


async def alone(base_url: str, flow: Flow, count: int) -> float:
    """Median time of ``count`` flows run one after the other."""
    async with portal.client(base_url, 4) as http:
        return statistics.median([await flow(http, base_url) for _ in range(count)])


def burst(
    name: str, pid: int, stub: int, base_url: str, flows: int, flow: Flow, database: bool
) -> dict[str, Any]:
    """``flows`` flows at once against one server; the CPU its process tree, its agent stub,
    the load generator and (``database``) PostgreSQL used meanwhile."""
    postmaster = postmaster_pid() if database else None
    probes = {"server": lambda: tree_cpu(pid)}
    if postmaster is not None:
        probes["postgresql"] = lambda: postgres_cpu(postmaster)
    portal.settle_heap()
    with CpuMeter({"stub": stub, "load generator": os.getpid()}, probes) as meter:
        wall, durations, failures = uvloop.run(all_at_once(base_url, flows, flow))
    done = len(durations)
    per_flow = {k: v / done * 1000 if done else float("nan") for k, v in meter.used.items()}
    figures = {
        "wall_s": wall,
        "completed": done,
        "failures": dict(failures),
        "flows_per_s": done / wall if wall else 0.0,
        "flow_s_median": sorted(durations)[done // 2] if done else float("nan"),
        "flow_s_max": max(durations, default=float("nan")),
        "cpu_s": meter.used["server"],
        "cpu_ms_per_flow": per_flow["server"],
        "cpu_seconds": meter.used,
        "cpu_ms_per_completed_flow": per_flow,
    }
    print(
        f"  {name:<6}: {done} flows in {wall:6.2f} s = {figures['flows_per_s']:7.2f} flows/s; "
        f"per flow median {figures['flow_s_median']:.2f} s, max {figures['flow_s_max']:.2f} s; "
        f"failures {dict(failures) or 'none'}\n          CPU per completed flow: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in per_flow.items()),
        flush=True,
    )
    return figures


def run(flows: int = 500, latency: float = 0.2) -> tuple[dict[str, Any], list[Check]]:
    """Both portals, one burst each; returns the figures and the checks."""
    heading(f"parity · portal: {flows} concurrent flows, agent latency {latency * 1000:.0f} ms")
    raise_nofile()
    figures: dict[str, Any] = {"flows": flows, "latency_s": latency}
    with scratch_database("postgresql") as url, tempfile.TemporaryDirectory() as qr_dir:
        app = AppServer("parity_portal_ours", {})
        acapy = StubProcess(
            "bench.fake_acapy",
            "--webhook-url",
            f"{app.url}/webhooks",
            "--webhook-key",
            WEBHOOK_KEY,
            "--latency",
            str(latency),
            "--connect-after",
            str(latency),
            "--accept-after",
            str(latency),
        )
        rest = StubProcess(
            "bench.fake_rest", "--scan-delay", str(latency), "--accept-delay", str(latency)
        )
        legacy: GunicornServer | None = None
        try:
            acapy.start()
            rest.start()
            rest.configure(latency=latency)
            app.env = app_env(url, env="production", agent="acapy", acapy_admin_url=acapy.url)
            app.start()
            legacy = GunicornServer(
                "parity_legacy_portal",
                "bench.legacy.portal:app",
                {
                    "LEGACY_SECRET_KEY": secrets.token_urlsafe(32),
                    "LEGACY_CONNECTION_URL": rest.url,
                    "LEGACY_ISSUER_URL": rest.url,
                    "LEGACY_QR_DIR": qr_dir,
                },
                worker_class="gthread",
                workers=2,
                threads=4,
            ).start()
            figures["ours_alone_s"] = uvloop.run(alone(app.url, concurrent_flows.flow, 3))
            figures["theirs_alone_s"] = uvloop.run(alone(legacy.url, legacy_flow, 1))
            print(
                f"  one flow alone: ours {figures['ours_alone_s']:.2f} s, theirs "
                f"{figures['theirs_alone_s']:.2f} s",
                flush=True,
            )
            acapy.configure(reset=True)
            rest.configure(reset=True)
            assert app.proc and legacy.proc and acapy.proc and rest.proc
            ours = (app.proc.pid, acapy.proc.pid, app.url, flows, concurrent_flows.flow, True)
            figures["ours"] = burst("ours", *ours)
            theirs = (legacy.proc.pid, rest.proc.pid, legacy.url, flows, legacy_flow, False)
            figures["theirs"] = burst("theirs", *theirs)
            figures["agent_calls"] = {
                "ours": acapy.stats()["total"],
                "theirs": rest.stats()["total"],
            }
        finally:
            app.stop()
            if legacy is not None:
                legacy.stop()
            acapy.stop()
            rest.stop()
    ratio = figures["ours"]["flows_per_s"] / figures["theirs"]["flows_per_s"]
    figures["ratio"] = ratio
    calls = figures["agent_calls"]
    print(
        f"  ours/theirs: {ratio:.1f}× completed flows/s (target ≥ {TARGET:g}×: "
        f"{'PASS' if ratio >= TARGET else 'FAIL'}); agent calls per flow ours "
        f"{calls['ours'] / max(1, figures['ours']['completed']):.1f}, theirs "
        f"{calls['theirs'] / max(1, figures['theirs']['completed']):.1f}"
    )
    checks = [
        Check(
            f"portal flows/s below {TARGET:g}× the 000 reference",
            (1 - ratio / TARGET) * 100,
            0.0,
            "%",
        )
    ]
    failed = sum(figures["ours"]["failures"].values()) + sum(figures["theirs"]["failures"].values())
    if failed:
        checks.append(Check(f"failed portal flows of 2 × {flows}", failed, 0, ""))
    return figures, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    report = Report("parity_portal")
    report.data, report.checks = run(args.flows, args.latency)
    report.print_checks()
    report.save()


if __name__ == "__main__":
    main()
