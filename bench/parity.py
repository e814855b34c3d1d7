"""Parity with the originals: our server against the legacy stack, side by side, in one run.

What is measured (issue 12): for ``GET /health``, ``GET /auth/status``, ``POST /generate_array``
and ``POST /login``, requests per second, p99 latency and CPU per request of

* **ours**: ``hypercorn --config hypercorn.toml 'issuer:create_app()'``, one worker, as in
  production (``ISSUER_ENV=production`` with a secret key, every middleware on, the rate limits
  on but raised out of the benchmark's way as the other benches do);
* **theirs**: ``bench.legacy.accounts`` (Flask, PyJWT, psycopg2) under one gunicorn sync worker,
  doing the same reads and writes on the same rows;

both on one scratch PostgreSQL database migrated with Alembic and seeded with our own service
(argon2id with our parameters). Each server logs in on its own ``/login`` (the tokens carry the
same claims, each signed by its server). The load is ``wrk -t1`` (C, one thread; the Lua script
adds the ``Authorization`` header and bodies), ``--connections`` (64) connections for
``--seconds`` per round after a warm-up; rounds interleave the servers, alternating which goes
first (ours, theirs, theirs, ours, …), so that the machine's other load weighs on both alike.
gunicorn's sync worker closes the connection after every answer, so wrk reconnects each time:
that is how the original served.

Logins (``--login-connections``, 16, rotating over 32 accounts) are bound by argon2: ceiling,
ours, theirs, ceiling, … where the *ceiling* is argon2id verifies per second with our
parameters on ``hash_threads`` (2) threads in a process of its own (``bench.accounts_login``);
each pair of login rounds is set against the mean of the ceilings around it.

Figures per path: req/s of each, the ratio ours/theirs, the median over rounds of each round's
p99, and CPU ms per answered request of the server's processes (all threads; the steadiest
figure on a busy machine) and of the PostgreSQL backends. Targets: ours ≥ 1.0× theirs on
``/auth/status`` and ``/generate_array``, ≥ 0.9× on ``/health``; our p99 no worse than theirs on
each; logins ≥ 85 % of the argon2 ceiling. ``--parts portal`` (on by default) adds the portal's
completed flows per second against the 000 reference (``bench.parity_portal``).

Run: ``python -m bench parity`` or ``python -m bench.parity [--quick] [--rounds 5] [--seconds 5]
[--parts api,logins,portal]``; ``PARITY_QUICK=1`` is ``--quick`` (short rounds, for
development). Figures are printed and saved to ``bench/results/parity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import parity_portal
from bench.accounts_login import (
    UNLIMITED,
    CeilingRun,
    CpuMeter,
    LoadResult,
    RequestSpec,
    app_settings,
    check_login,
    create_users,
    load_tool,
    login_specs,
    run_load,
    start_app,
)
from bench.common import ROOT, AppServer, Check, Report, heading, scratch_database
from bench.legacy.server import GunicornServer

CONNECTIONS = 64
LOGIN_CONNECTIONS = 16
USERS = 32
SENTENCE = "The quick brown fox jumps over the lazy dog"
PATHS = ("/health", "/auth/status", "/generate_array")
# ours/theirs requests per second at least this (issue 12)
TARGETS = {"/health": 0.9, "/auth/status": 1.0, "/generate_array": 1.0}
LOGIN_TARGET = 0.85


@dataclass
class Side:
    """One server under test: how to reach it and which processes are its own."""

    name: str
    url: str
    pids: list[int]
    token: str = ""

    def specs(self, path: str) -> list[RequestSpec]:
        auth = {"Authorization": f"Bearer {self.token}"}
        if path == "/health":
            return [RequestSpec("GET", "/health")]
        if path == "/auth/status":
            return [RequestSpec("GET", "/auth/status", auth)]
        body = json.dumps({"sentence": SENTENCE})
        headers = auth | {"Content-Type": "application/json"}
        return [RequestSpec("POST", "/generate_array", headers, body)]


@dataclass
class Round:
    side: str
    path: str
    load: LoadResult
    cpu: dict[str, float]  # CPU seconds: "loop" (main threads), "threads", "postgres"

    @property
    def server_cpu(self) -> float:
        return self.cpu["loop"] + self.cpu["threads"]


@dataclass
class Pooled:
    """The rounds of one side on one path, pooled."""

    rounds: list[Round] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(r.load.ok for r in self.rounds)

    @property
    def rps(self) -> float:
        return self.ok / sum(r.load.seconds for r in self.rounds)

    @property
    def p99(self) -> float:
        return statistics.median(r.load.p99_ms for r in self.rounds)

    @property
    def failed(self) -> int:
        return sum(r.load.failed for r in self.rounds)

    def cpu_ms(self, kind: str) -> float:
        """CPU ms per answered request: ``server`` (its processes) or ``postgres``."""
        used = sum(r.server_cpu if kind == "server" else r.cpu["postgres"] for r in self.rounds)
        return used / self.ok * 1000 if self.ok else float("nan")


def check_side(side: Side) -> None:
    """Each path answers 200 (500 floats for the vector) with the token, 401 without."""
    with httpx.Client(base_url=side.url, timeout=10, trust_env=False) as client:
        for path in PATHS:
            spec = side.specs(path)[0]
            answer = client.request(spec.method, path, headers=spec.headers, content=spec.body)
            if answer.status_code != 200:
                raise RuntimeError(f"{side.name} {path}: {answer.status_code} {answer.text[:200]}")
            if path == "/generate_array" and len(answer.json()) != 500:
                raise RuntimeError(f"{side.name} /generate_array: not 500 floats")
            if path != "/health":
                bare = client.request(spec.method, path, content=spec.body)
                if bare.status_code != 401:
                    raise RuntimeError(f"{side.name} {path} without a token: {bare.status_code}")


def measure(side: Side, specs: list[RequestSpec], database_url: str, args: Any) -> Round:
    meter = CpuMeter(side.pids, database_url).start()
    load = run_load(
        side.url, specs, connections=args.connections, seconds=args.seconds, tool=args.tool
    )
    return Round(side.name, specs[0].path, load, meter.stop())


def read_rounds(sides: list[Side], database_url: str, args: Any) -> dict[str, dict[str, Pooled]]:
    """For each path: warm up both, then ``rounds`` rounds of each, in alternating order."""
    pooled: dict[str, dict[str, Pooled]] = {p: {s.name: Pooled() for s in sides} for p in PATHS}
    for path in PATHS:
        for side in sides:
            run_load(
                side.url,
                side.specs(path),
                connections=args.connections,
                seconds=args.warmup,
                tool=args.tool,
            )
        for number in range(args.rounds):
            order = sides if number % 2 == 0 else sides[::-1]
            for side in order:
                done = measure(side, side.specs(path), database_url, args)
                pooled[path][side.name].rounds.append(done)
                print(
                    f"  {path:<16} round {number + 1} {side.name:<6} {done.load.rps:7.0f} req/s"
                    f"  p99 {done.load.p99_ms:6.1f} ms  failed {done.load.failed}",
                    flush=True,
                )
    return pooled


@dataclass
class LoginFigures:
    ceiling_rps: float
    cpu_ms_per_verify: float  # one verify in the ceiling's process
    rps: dict[str, float]
    p99_ms: dict[str, float]
    failed: dict[str, int]
    cpu_ms: dict[str, float]  # server CPU per login

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"ratio": {k: v / self.ceiling_rps for k, v in self.rps.items()}}


def login_rounds(sides: list[Side], users: list[str], database_url: str, args: Any) -> LoginFigures:
    """Ceiling, ours, theirs, ceiling, theirs, ours, ceiling, …"""
    settings = app_settings()
    specs = login_specs(users)
    for side in sides:
        run_load(
            side.url, specs, connections=args.login_connections, seconds=args.warmup, tool=args.tool
        )
    ceilings = [CeilingRun(settings, settings.hash_threads, args.ceiling_seconds).start().wait()]
    done: dict[str, Pooled] = {s.name: Pooled() for s in sides}
    for number in range(args.login_rounds):
        for side in sides if number % 2 == 0 else sides[::-1]:
            meter = CpuMeter(side.pids, database_url).start()
            load = run_load(
                side.url,
                specs,
                connections=args.login_connections,
                seconds=args.seconds,
                tool=args.tool,
            )
            done[side.name].rounds.append(Round(side.name, "/login", load, meter.stop()))
            print(
                f"  /login           round {number + 1} {side.name:<6} {load.rps:7.1f} "
                f"logins/s  p99 {load.p99_ms:6.1f} ms  failed {load.failed}",
                flush=True,
            )
        ceilings.append(
            CeilingRun(settings, settings.hash_threads, args.ceiling_seconds).start().wait()
        )
        print(
            f"  argon2 ceiling {ceilings[-2].rate:6.1f} → {ceilings[-1].rate:6.1f} verifies/s "
            f"({settings.hash_threads} threads)",
            flush=True,
        )
    ceiling = sum(c.verifies for c in ceilings) / sum(c.seconds for c in ceilings)
    return LoginFigures(
        ceiling,
        sum(c.cpu_seconds for c in ceilings) / sum(c.verifies for c in ceilings) * 1000,
        {k: v.rps for k, v in done.items()},
        {k: v.p99 for k, v in done.items()},
        {k: v.failed for k, v in done.items()},
        {k: v.cpu_ms("server") for k, v in done.items()},
    )


def start_legacy(database_url: str) -> GunicornServer:
    settings = app_settings()
    env = {
        "LEGACY_DATABASE_DSN": database_url.replace("postgresql+asyncpg://", "postgresql://"),
        "LEGACY_SECRET_KEY": secrets.token_urlsafe(32),
        "LEGACY_ARGON2_TIME_COST": str(settings.argon2_time_cost),
        "LEGACY_ARGON2_MEMORY_KIB": str(settings.argon2_memory_kib),
        "LEGACY_ARGON2_PARALLELISM": str(settings.argon2_parallelism),
        "LEGACY_JWT_ISSUER": settings.jwt_issuer,
        "LEGACY_JWT_AUDIENCE": settings.jwt_audience,
    }
    return GunicornServer("parity_legacy_accounts", "bench.legacy.accounts:app", env).start()


def ours_pids(app: AppServer) -> list[int]:
    assert app.proc is not None
    return [app.proc.pid, *app.worker_pids]


def print_reads(pooled: dict[str, dict[str, Pooled]]) -> list[Check]:
    print(
        f"  {'path':<16} {'ours req/s':>10} {'theirs':>8} {'ratio':>6} {'target':>6}  "
        f"{'p99 ours':>8} {'theirs':>7}  {'CPU ms/req ours':>15} {'theirs':>7}  "
        f"{'PG ms/req ours':>14} {'theirs':>7}  verdict"
    )
    checks = []
    for path, sides in pooled.items():
        ours, theirs = sides["ours"], sides["theirs"]
        ratio = ours.rps / theirs.rps
        fast = ratio >= TARGETS[path]
        tail = ours.p99 <= theirs.p99
        verdict = f"{'PASS' if fast else 'FAIL'} req/s, {'PASS' if tail else 'FAIL'} p99"
        print(
            f"  {path:<16} {ours.rps:10.0f} {theirs.rps:8.0f} {ratio:5.2f}× {TARGETS[path]:5.1f}×"
            f"  {ours.p99:6.1f}ms {theirs.p99:5.1f}ms  {ours.cpu_ms('server'):15.3f} "
            f"{theirs.cpu_ms('server'):7.3f}  {ours.cpu_ms('postgres'):14.3f} "
            f"{theirs.cpu_ms('postgres'):7.3f}  {verdict}"
        )
        pairs = [o.load.rps / t.load.rps for o, t in zip(ours.rounds, theirs.rounds, strict=True)]
        print(
            f"    ratio of each round pair: {min(pairs):.2f}× – {max(pairs):.2f}×; failed answers:"
            f" ours {ours.failed}, theirs {theirs.failed}"
        )
        # Check: value ≤ target. The shortfall below the target ratio, in % (≤ 0 passes).
        short = (1 - ratio / TARGETS[path]) * 100
        checks.append(
            Check(f"{path} req/s below {TARGETS[path]:g}× the reference", short, 0.0, "%")
        )
        checks.append(Check(f"{path} p99 ours / p99 theirs", ours.p99 / theirs.p99, 1.0, "×"))
    return checks


def print_logins(logins: LoginFigures) -> list[Check]:
    ratio = {k: v / logins.ceiling_rps for k, v in logins.rps.items()}
    print(
        f"  /login: argon2 ceiling {logins.ceiling_rps:.1f} verifies/s; ours "
        f"{logins.rps['ours']:.1f}/s = {ratio['ours'] * 100:.1f} % of it (target ≥ "
        f"{LOGIN_TARGET * 100:.0f} %: {'PASS' if ratio['ours'] >= LOGIN_TARGET else 'FAIL'}); "
        f"theirs {logins.rps['theirs']:.1f}/s = {ratio['theirs'] * 100:.1f} %; ours/theirs "
        f"{logins.rps['ours'] / logins.rps['theirs']:.2f}×"
    )
    print(
        f"          p99 ours {logins.p99_ms['ours']:.0f} ms, theirs {logins.p99_ms['theirs']:.0f}"
        f" ms; server CPU per login ours {logins.cpu_ms['ours']:.1f} ms, theirs "
        f"{logins.cpu_ms['theirs']:.1f} ms (one verify alone {logins.cpu_ms_per_verify:.1f} ms); "
        f"failed ours {logins.failed['ours']}, theirs "
        f"{logins.failed['theirs']}"
    )
    short = (1 - ratio["ours"] / LOGIN_TARGET) * 100
    return [Check(f"/login below {LOGIN_TARGET * 100:.0f} % of the argon2 ceiling", short, 0, "%")]


def reads_data(pooled: dict[str, dict[str, Pooled]]) -> dict[str, Any]:
    """The read rounds as saved in the JSON report."""
    return {
        path: {
            name: {
                "rps": p.rps,
                "p99_ms_median": p.p99,
                "failed": p.failed,
                "server_cpu_ms_per_request": p.cpu_ms("server"),
                "postgres_cpu_ms_per_request": p.cpu_ms("postgres"),
                "rounds": [r.load.as_dict() | {"cpu_seconds": r.cpu} for r in p.rounds],
            }
            for name, p in sides.items()
        }
        for path, sides in pooled.items()
    }


def run_api(args: Any, report: Report) -> None:
    parts = args.parts
    heading("parity · accounts API: ours (hypercorn, 1 worker) vs theirs (gunicorn sync, 1)")
    print(
        f"  {args.connections} connections ({args.login_connections} for logins), "
        f"{args.rounds} × {args.seconds:g} s rounds per server and path; load: {args.tool}"
    )
    with scratch_database("postgresql") as url:
        users = create_users(url, USERS)
        app = start_app(
            "parity_ours",
            url,
            login_limit_per_ip=UNLIMITED,
            login_limit_per_account=UNLIMITED,
            generate_array_quota=UNLIMITED,
        )
        legacy: GunicornServer | None = None
        try:
            legacy = start_legacy(url)
            sides = [Side("ours", app.url, ours_pids(app)), Side("theirs", legacy.url, legacy.pids)]
            for side in sides:
                side.token = check_login(side.url, users[0])
                check_side(side)
            if "api" in parts:
                pooled = read_rounds(sides, url, args)
            if "logins" in parts:
                logins = login_rounds(sides, users, url, args)
        finally:
            app.stop()
            if legacy is not None:
                legacy.stop()
    heading("parity · accounts API · summary")
    if "api" in parts:
        report.checks.extend(print_reads(pooled))
        report.data["reads"] = reads_data(pooled)
    if "logins" in parts:
        report.checks.extend(print_logins(logins))
        report.data["logins"] = logins.as_dict()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (also PARITY_QUICK=1)")
    parser.add_argument("--parts", default="api,logins,portal", help="comma separated")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server and path")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per server and path")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--login-connections", type=int, default=LOGIN_CONNECTIONS)
    parser.add_argument("--login-rounds", type=int, default=4)
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--flows", type=int, default=500, help="concurrent portal flows")
    parser.add_argument("--latency", type=float, default=0.2, help="agent latency, seconds")
    parser.add_argument("--load-tool", choices=("auto", "wrk", "httpx"), default="auto")
    args = parser.parse_args()
    if args.quick or os.environ.get("PARITY_QUICK") == "1":
        args.quick = True
        args.rounds, args.seconds, args.warmup = 2, 2.0, 1.0
        args.login_rounds, args.ceiling_seconds, args.flows = 1, 2.0, min(args.flows, 100)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    args.tool = load_tool(args.load_tool)
    return args


def main() -> None:
    args = arguments()
    report = Report("parity")
    if args.parts & {"api", "logins"}:
        run_api(args, report)
    if "portal" in args.parts:
        figures, checks = parity_portal.run(args.flows, args.latency)
        report.data["portal"] = figures
        report.checks.extend(checks)
    report.data.update(
        load_tool=args.tool,
        cpu_count=os.cpu_count(),
        args={k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()},
    )
    heading("parity · checks")
    report.print_checks()
    print(f"  saved {report.save().relative_to(ROOT)}")


if __name__ == "__main__":
    main()
