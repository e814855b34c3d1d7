"""``POST /login_mfa`` next to ``POST /login``: requests per second, p99, and CPU per request.

What is measured (issue 8, §8), on PostgreSQL and on SQLite: the login's second step must not
cost another argon2 verify. One app (hypercorn.toml, one worker, ``ISSUER_ENV=production``) on
a scratch database serves, in alternating rounds,

- ``/login``: JSON username and password of ``--users`` accounts (argon2id with the app's
  parameters: one verify per request, in the hash pool), and
- ``/login_mfa``: ``{"otp", "mfa_token"}`` of accounts with TOTP on, each request a challenge
  and a TOTP step never used before (a step works once per account, a challenge once: a
  replayed request would be refused, so each round gets accounts of its own).

from ``--concurrency`` (16) keep-alive connections driven by ``wrk`` (or httpx in a process of
its own). For each: successful requests per second, latency p50/p99, and the CPU time per
request of the worker's event-loop thread, of its other threads (the hash pool: argon2 runs
there and nowhere else) and of the PostgreSQL backends, next to one argon2 verify's CPU time
measured in a process of its own. Target: the hash pool spends less than a tenth of one verify
per ``/login_mfa`` (none is the design; the margin is for the pool's idle wake-ups).

The MFA accounts and their TOTP secrets are made beforehand, and each round's challenges just
before it, with the app's own services and models (no HTTP, cheap hashing for those accounts'
unused passwords); the codes
are computed by pyotp just before each round, for the step current then (the app accepts one
step of drift, so they stay valid for at least 30 s: longer than a round).

Run: ``python -m bench.mfa_login [--database postgresql,sqlite] [--rounds 3] [--seconds 5]``.
Figures are printed and saved to ``bench/results/mfa_login.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pyotp
from sqlalchemy import select, update

from bench.accounts_login import (
    CONCURRENCY,
    UNLIMITED,
    CpuMeter,
    LoadResult,
    RequestSpec,
    app_settings,
    check_login,
    create_users,
    load_tool,
    login_specs,
    measure_ceiling,
    run_load,
    start_app,
)
from bench.common import ROOT, SECRET_KEY, Check, Report, heading, scratch_database

USERS = 32  # password accounts for /login
TARGET_POOL_SHARE = 0.10  # hash-pool CPU per /login_mfa, as a share of one verify
HEADERS = {"Content-Type": "application/json", "User-Agent": "bench.mfa_login"}


def _bench_app(url: str) -> Any:
    from issuer import create_app

    return create_app(
        {"env": "test", "secret_key": SECRET_KEY, "database_url": url,
         "argon2_memory_kib": 1024, "argon2_time_cost": 1}
    )  # fmt: skip


async def _mfa_accounts(url: str, count: int) -> list[tuple[int, str]]:
    """``count`` accounts with TOTP enabled: (user id, TOTP secret)."""
    from issuer.accounts.models import User
    from issuer.accounts.service import NewAccount
    from issuer.mfa.models import OtpMethod
    from issuer.services import services_of

    services = services_of(_bench_app(url))
    prefix = secrets.token_hex(3)
    try:
        names = [f"mfa-{prefix}-{i:05d}" for i in range(count)]
        for start in range(0, count, 200):
            await asyncio.gather(
                *(services.accounts.register(NewAccount("unused password", username=n))
                  for n in names[start:start + 200])
            )  # fmt: skip
        found: list[tuple[int, str]] = []
        now = services.clock.now()
        async with services.db.transaction() as session:
            ids = list(await session.scalars(select(User.id).where(User.username.in_(names))))
            for user_id in ids:
                secret = pyotp.random_base32()
                sealed = services.totp.secrets_box.seal(secret)
                session.add(
                    OtpMethod(user_id=user_id, secret=sealed, confirmed_at=now, enabled_at=now)
                )
                found.append((user_id, secret))
            await session.execute(update(User).where(User.id.in_(ids)).values(mfa_enabled=True))
        return found
    finally:
        await services.close()


async def _challenges(url: str, accounts: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """One live MFA challenge per account, issued just before its round (they expire in
    minutes): (TOTP secret, challenge token)."""
    from issuer.accounts.models import User
    from issuer.services import services_of

    services = services_of(_bench_app(url))
    found: list[tuple[str, str]] = []
    try:
        for start in range(0, len(accounts), 250):
            chunk = dict(accounts[start : start + 250])
            async with services.db.transaction() as session:
                users = await session.scalars(select(User).where(User.id.in_(list(chunk))))
                for user in users:
                    token, _, _ = await services.challenges.issue(
                        session, user, first_factor="password", kind="api"
                    )
                    found.append((chunk[user.id], token))
        return found
    finally:
        await services.close()


def mfa_specs(accounts: list[tuple[str, str]]) -> list[RequestSpec]:
    """One ``/login_mfa`` per account, with the code of the step current now."""
    when = datetime.now(UTC)
    return [
        RequestSpec(
            "POST",
            "/login_mfa",
            HEADERS,
            json.dumps({"otp": pyotp.TOTP(secret).at(when), "mfa_token": token}),
        )
        for secret, token in accounts
    ]


def check_mfa(base_url: str, spec: RequestSpec) -> None:
    response = httpx.post(
        f"{base_url}{spec.path}", content=spec.body, headers=spec.headers, timeout=30,
        trust_env=False,
    )  # fmt: skip
    if response.status_code != 200 or not response.json()["user"].get("access_token"):
        raise RuntimeError(f"/login_mfa failed: {response.status_code} {response.text[:300]}")


def per_request(cpu: dict[str, float], load: LoadResult) -> dict[str, float]:
    done = max(load.ok, 1)
    return {kind: seconds / done * 1000 for kind, seconds in cpu.items()}


def run_database(database: str, args: argparse.Namespace, tool: str) -> dict[str, Any]:
    settings = app_settings()
    heading(f"mfa_login · {database}")
    with scratch_database(database) as url:
        users = create_users(url, USERS)
        per_round = args.per_round
        prepared = asyncio.run(_mfa_accounts(url, per_round * args.rounds + 1))
        app = start_app(
            f"mfa_login_{database}", url,
            login_limit_per_ip=UNLIMITED, login_limit_per_account=UNLIMITED,
            mfa_limit_per_ip=UNLIMITED, mfa_limit_per_account=UNLIMITED,
        )  # fmt: skip
        try:
            check_login(app.url, users[0])
            check_mfa(app.url, mfa_specs(asyncio.run(_challenges(url, prepared[:1])))[0])
            rounds: dict[str, list[tuple[LoadResult, dict[str, float]]]] = {
                "/login": [], "/login_mfa": []
            }  # fmt: skip
            passwords = login_specs(users)
            run_load(app.url, passwords, connections=args.concurrency, seconds=2, tool=tool)
            for number in range(args.rounds):
                accounts = prepared[1 + number * per_round : 1 + (number + 1) * per_round]
                batch = asyncio.run(_challenges(url, accounts))
                for path, specs in (("/login", passwords), ("/login_mfa", mfa_specs(batch))):
                    meter = CpuMeter(app.worker_pids, url).start()
                    load = run_load(
                        app.url, specs, connections=args.concurrency, seconds=args.seconds,
                        tool=tool,
                    )  # fmt: skip
                    cpu = per_request(meter.stop(), load)
                    rounds[path].append((load, cpu))
                    print(
                        f"  round {number + 1} {path:<11} {load.rps:7.1f} req/s  p50 "
                        f"{load.p50_ms:6.1f} ms  p99 {load.p99_ms:6.1f} ms  failed "
                        f"{load.failed}  CPU/request: loop {cpu['loop']:.2f} ms, threads "
                        f"{cpu['threads']:.2f} ms, postgres {cpu['postgres']:.2f} ms",
                        flush=True,
                    )
                    if path == "/login_mfa" and load.ok + load.failed >= len(specs):
                        print("  (every prepared /login_mfa was sent: raise --per-round)")
        finally:
            app.stop()
    verify = measure_ceiling(settings, 1, 3.0)
    figures: dict[str, Any] = {"database": database, "cpu_ms_per_verify": verify.cpu_ms_per_verify}
    for path, results in rounds.items():
        ok = sum(load.ok for load, _ in results)
        seconds = sum(load.seconds for load, _ in results)
        cpu = {
            kind: sum(c[kind] * load.ok for load, c in results) / max(ok, 1)
            for kind in ("loop", "threads", "postgres")
        }
        figures[path] = {
            "rps": ok / seconds,
            "p50_ms": statistics.median(load.p50_ms for load, _ in results),
            "p99_ms": max(load.p99_ms for load, _ in results),
            "failed": sum(load.failed for load, _ in results),
            "cpu_ms_per_request": cpu,
        }
    mfa, login = figures["/login_mfa"], figures["/login"]
    figures["rps_ratio"] = mfa["rps"] / login["rps"]
    figures["pool_share_of_verify"] = (
        mfa["cpu_ms_per_request"]["threads"] / verify.cpu_ms_per_verify
    )
    print(
        f"  /login {login['rps']:.1f} req/s (p99 {login['p99_ms']:.0f} ms), /login_mfa "
        f"{mfa['rps']:.1f} req/s (p99 {mfa['p99_ms']:.0f} ms): × {figures['rps_ratio']:.2f}; "
        f"hash-pool CPU per /login_mfa {mfa['cpu_ms_per_request']['threads']:.2f} ms = "
        f"{figures['pool_share_of_verify'] * 100:.1f} % of one verify "
        f"({verify.cpu_ms_per_verify:.1f} ms)"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="postgresql,sqlite", help="comma separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round")
    parser.add_argument("--per-round", type=int, default=4000, help="MFA accounts per round")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--load-tool", choices=("auto", "wrk", "httpx"), default="auto")
    args = parser.parse_args()
    tool = load_tool(args.load_tool)
    report = Report("mfa_login")
    for database in [d.strip() for d in args.database.split(",") if d.strip()]:
        started = time.monotonic()
        figures = run_database(database, args, tool)
        figures["seconds"] = time.monotonic() - started
        report.data[database] = figures
        report.checks.append(
            Check(f"{database}: hash-pool CPU per /login_mfa, share of one argon2 verify",
                  figures["pool_share_of_verify"] * 100, TARGET_POOL_SHARE * 100, "%")
        )  # fmt: skip
    report.data.update(load_tool=tool, cpu_count=os.cpu_count(), args=vars(args))
    report.print_checks()
    print(f"  saved {report.save().relative_to(ROOT)}")


if __name__ == "__main__":
    main()
