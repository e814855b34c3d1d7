"""Agent requests per completed issuance: the polling (REST) adapter vs. the original portal.

What is measured: how many requests the app makes to the original connect/issue REST API
(``bench.fake_rest``, CONTRACTS.md §1) per completed issuance, for visitors with 3 open tabs (3
websockets on one cookie session) and, for comparison, with 1 tab; and how late the page learns
that the holder connected / accepted (the price of polling with backoff).

How: ``issuances`` visitors per tab count start within ``stagger`` seconds (seeded). Each loads
``GET /``, opens its tabs' websockets, waits for ``connected``, fills the form for ``form_delay``
seconds, posts ``/name`` and waits for ``accepted``. The stub plays the holder with human timings:
the connection turns ``"established"`` ``scan_delay`` seconds after the invitation was made, the
process ``"DONE"`` ``accept_delay`` seconds after the offer. The app's single poller per session
(``issuance.pollers``, default backoff 0.5 s × 1.5 up to 5 s) does the asking. Requests are
attributed to issuances by connection / process id.

The original polled once per open tab every 2 s (``/check_connection/`` while waiting for the
scan, ``/loading/`` while waiting for the acceptance), each poll one agent request, so per
issuance it made ``2 + tabs × (ceil(d_connect / 2 s) + ceil(d_accept / 2 s))`` requests, where
``d_connect`` runs from page load to the scan and ``d_accept`` from offer to acceptance — computed
here from the same issuances' measured durations. Its detection delay is likewise exact:
``ceil(d / 2 s) × 2 s − d``.

``--time-scale`` shrinks every human delay, the original's 2 s period and the app's polling
settings alike (``ISSUER_POLL_*``), so the comparison stays fair; the default is real time.
``--poll-initial/--poll-backoff/--poll-max`` try other poller settings (default: the app's).

Run alone: ``python -m bench.polling [--issuances 50] [--tabs 3,1] [--time-scale 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import uvloop

from bench import portal
from bench.common import (
    AppServer,
    Check,
    Report,
    RowLookup,
    StubProcess,
    app_env,
    heading,
    raise_nofile,
    scratch_database,
)
from issuer.config import Settings

ORIGINAL_PERIOD = 2.0
# The app's defaults (config.py); scaled with the human timings.
# The app's own defaults (ISSUER_POLL_*), read from its settings so the bench follows them.
_FIELDS = Settings.model_fields
POLL_INITIAL = float(_FIELDS["poll_initial_delay"].default)
POLL_BACKOFF = float(_FIELDS["poll_backoff"].default)
POLL_MAX = float(_FIELDS["poll_max_delay"].default)


@dataclass
class Human:
    scan_delay: float = 5.0
    accept_delay: float = 5.0
    form_delay: float = 3.0
    stagger: float = 8.0


@dataclass
class Issuance:
    tabs: int
    session_id: str = ""
    loaded: float = 0.0
    connected_seen: float = 0.0
    offered: float = 0.0
    accepted_seen: float = 0.0


async def issue(http: Any, base_url: str, tabs: int, start: float, human: Human) -> Issuance:
    await asyncio.sleep(start)
    done = Issuance(tabs, loaded=time.monotonic())
    visitor = await portal.open_session(http)
    done.session_id = visitor.session_id
    pages = await asyncio.gather(*(portal.open_page(base_url, visitor) for _ in range(tabs)))
    try:
        timeout = 10 * (human.scan_delay + human.accept_delay) + 30
        seen = await asyncio.gather(*(p.reach("connected", timeout) for p in pages))
        done.connected_seen = min(seen)
        await asyncio.sleep(human.form_delay)
        done.offered = time.monotonic()
        await portal.submit_name(http, visitor)
        seen = await asyncio.gather(*(p.reach("accepted", timeout) for p in pages))
        done.accepted_seen = min(seen)
    finally:
        await asyncio.gather(*(p.close() for p in pages))
    return done


async def run_visitors(
    base_url: str, plan: list[int], human: Human, seed: int
) -> tuple[list[Issuance], int]:
    rng = random.Random(seed)
    starts = [rng.uniform(0, human.stagger) for _ in plan]
    async with portal.client(base_url, len(plan) + 5, timeout=120) as http:
        results = await asyncio.gather(
            *(issue(http, base_url, tabs, s, human) for tabs, s in zip(plan, starts, strict=True)),
            return_exceptions=True,
        )
    done = [r for r in results if isinstance(r, Issuance)]
    return done, len(results) - len(done)


def original_polls(duration: float, period: float) -> int:
    return max(1, math.ceil(duration / period))


def analyse(
    done: list[Issuance], ids: dict[str, dict[str, str]], stub: dict[str, Any], period: float
) -> dict[int, dict[str, float]]:
    """Per tab count: agent requests and detection delays, ours and the original's."""
    rows: dict[int, list[dict[str, float]]] = defaultdict(list)
    for i in done:
        connection = ids["connection_id"][i.session_id]
        process = ids["exchange_id"][i.session_id]
        connected_at = stub["connections"][connection]
        accepted_at = stub["processes"][process]
        d_connect, d_accept = connected_at - i.loaded, accepted_at - i.offered
        polls = (original_polls(d_connect, period), original_polls(d_accept, period))
        rows[i.tabs].append(
            {
                "ours": 2 + stub["per_id"].get(connection, 0) + stub["per_id"].get(process, 0),
                "original": 2 + i.tabs * sum(polls),
                "ours_delay_connect": i.connected_seen - connected_at,
                "ours_delay_accept": i.accepted_seen - accepted_at,
                "original_delay_connect": polls[0] * period - d_connect,
                "original_delay_accept": polls[1] * period - d_accept,
            }
        )
    return {
        tabs: {key: statistics.fmean(r[key] for r in group) for key in group[0]}
        | {"issuances": len(group)}
        for tabs, group in sorted(rows.items())
    }


def run(
    issuances: int = 50,
    tabs: tuple[int, ...] = (3, 1),
    human: Human | None = None,
    time_scale: float = 1.0,
    seed: int = 7,
    poll: tuple[float, float, float] = (POLL_INITIAL, POLL_BACKOFF, POLL_MAX),
) -> Report:
    human = human or Human()
    scaled = Human(*(value * time_scale for value in vars(human).values()))
    period = ORIGINAL_PERIOD * time_scale
    heading(
        f"polling: agent requests per issuance, {issuances} issuances × tabs {tabs}, "
        f"scan {scaled.scan_delay:g} s, accept {scaled.accept_delay:g} s after the offer, "
        f"poller {poll[0]:g} s × {poll[1]:g} up to {poll[2]:g} s"
    )
    raise_nofile()
    report = Report("polling")
    plan = [t for t in tabs for _ in range(issuances)]
    with scratch_database("sqlite") as url:
        stub = StubProcess(
            "bench.fake_rest",
            "--scan-delay",
            str(scaled.scan_delay),
            "--accept-delay",
            str(scaled.accept_delay),
        )
        app = AppServer("polling-app", {})
        try:
            stub.start()
            app.env = app_env(
                url,
                agent="rest",
                rest_connection_url=stub.url,
                rest_issuer_url=stub.url,
                rest_credential_definition_id="bench:3:CL:1:default",
                poll_initial_delay=poll[0] * time_scale,
                poll_backoff=poll[1],
                poll_max_delay=poll[2] * time_scale,
            )
            app.start()
            started = time.monotonic()
            done, failed = uvloop.run(run_visitors(app.url, plan, scaled, seed))
            wall = time.monotonic() - started
            stats = stub.stats()

            async def lookup() -> dict[str, dict[str, str]]:
                rows = RowLookup(url)
                sessions = [i.session_id for i in done]
                try:
                    return {
                        c: await rows.fetch(c, sessions) for c in ("connection_id", "exchange_id")
                    }
                finally:
                    await rows.close()

            ids = uvloop.run(lookup())
        finally:
            app.stop()
            stub.stop()

    figures = analyse(done, ids, stats, period)
    report.data.update(
        issuances=issuances,
        tabs=list(tabs),
        poll_initial_backoff_max=list(poll),
        human=vars(scaled),
        time_scale=time_scale,
        original_period_s=period,
        completed=len(done),
        failed=failed,
        wall_s=wall,
        agent_requests=stats["requests"],
        per_tabs=figures,
    )
    total = stats["total"] - stats["requests"].get("GET / (ready probe)", 0)
    print(
        f"  completed {len(done)}/{len(plan)} in {wall:.1f} s; agent requests {total} "
        f"({total / max(len(done), 1):.1f} per completed issuance, all tab counts)"
    )
    print(f"  by route: {stats['requests']}")
    print(
        "  tabs | requests/issuance: ours  original (1 per tab per "
        f"{period:g} s) | mean detection delay s, connect / accept: ours  original"
    )
    for n, f in figures.items():
        print(
            f"  {n:4} | {f['ours']:25.1f} {f['original']:9.1f}"
            f" | {f['ours_delay_connect']:10.2f} / {f['ours_delay_accept']:.2f}"
            f"  {f['original_delay_connect']:8.2f} / {f['original_delay_accept']:.2f}"
        )
        report.checks.append(
            Check(
                f"agent requests per issuance with {n} tab(s), ours / original",
                f["ours"] / f["original"],
                1.0,
                "×",
            )
        )
    if time_scale != 1.0:
        report.notes.append(f"time scaled by {time_scale}: the original's period is {period:g} s")
    if failed:
        report.checks.append(Check("failed issuances", failed, 0, ""))
    report.save()
    report.print_checks()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuances", type=int, default=50, help="per tab count")
    parser.add_argument("--tabs", default="3,1")
    parser.add_argument("--scan-delay", type=float, default=Human.scan_delay)
    parser.add_argument("--accept-delay", type=float, default=Human.accept_delay)
    parser.add_argument("--form-delay", type=float, default=Human.form_delay)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--poll-initial", type=float, default=POLL_INITIAL, help="seconds")
    parser.add_argument("--poll-backoff", type=float, default=POLL_BACKOFF, help="factor")
    parser.add_argument("--poll-max", type=float, default=POLL_MAX, help="seconds")
    args = parser.parse_args()
    human = Human(args.scan_delay, args.accept_delay, args.form_delay)
    poll = (args.poll_initial, args.poll_backoff, args.poll_max)
    tabs = tuple(int(t) for t in args.tabs.split(","))
    run(args.issuances, tabs, human, args.time_scale, poll=poll)


if __name__ == "__main__":
    main()
