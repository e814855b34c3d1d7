"""Logins per second against the argon2 ceiling, and ``/health`` latency during a login storm.

What is measured (issue 3, §8), on PostgreSQL and on SQLite:

(a) **Login throughput against the argon2 ceiling.** The *ceiling* is how many argon2id verifies
    per second this machine does with the app's own parameters (``argon2_time_cost``,
    ``argon2_memory_kib``, ``argon2_parallelism``: OWASP's t=2, m=19 MiB, p=1 by default) on as
    many threads as the app's hash pool (``hash_threads``, default 2), in a Python process of its
    own that does nothing else. The app's figure is successful ``POST /login`` (JSON username and
    password → 200 with tokens) per second over HTTP from ``--concurrency`` (16) keep-alive
    connections, rotating over ``--users`` pre-registered accounts. The two alternate — ceiling,
    logins, ceiling, logins, …, ceiling — and each login round is compared with the mean of the
    two ceilings around it, so that whatever else runs on the machine weighs on both sides alike.
    Target: logins/s ≥ 85 % of the ceiling. A second view that other load hardly moves: the CPU
    time per login of the app worker's event-loop thread, of its other threads (the hash pool)
    and of the PostgreSQL backends, against the CPU time of one verify in the ceiling process.
    One verify's share of the server's CPU per login is what the ratio would be on a machine
    doing nothing else (both then have all the cores; the app spends some on its event loop).
(b) **/health during a login storm.** ``GET /health`` is probed one request at a time on one
    keep-alive connection, every 20 ms, for ``--probe-seconds`` under three conditions: the
    server idle; a bare argon2 process hashing on as many threads as the app's pool (the same
    CPU pressure without the app's work: the machine's own floor); and while ``--concurrency``
    connections log in continuously. p50 and p99 of each. Target: p99 ≤ 25 ms during the storm
    (a hash on the event loop would show as latencies of a hash times the queue: seconds).

How: the app runs as in production, ``hypercorn --config hypercorn.toml 'issuer:create_app()'``
with one worker, as a subprocess (``ISSUER_ENV=production``), on a scratch database migrated with
Alembic and dropped afterwards. The login rate limits are raised (``ISSUER_LOGIN_LIMIT_PER_IP``,
``ISSUER_LOGIN_LIMIT_PER_ACCOUNT``) so that they never answer 429. The accounts are created
beforehand with the app's own ``Accounts.register`` and the same hashing parameters, so no login
rehashes. The load comes from ``wrk`` (C, one thread, cheap on CPU) when it is installed, otherwise
from httpx in a separate process — never from the server's process. Every loop is bounded in time
and count; everything talks to 127.0.0.1 only.

This module also holds the load-generation helpers ``bench.accounts_reads`` uses
(``RequestSpec``, ``LoadRun``, ``probe``, ``create_users``, ``start_app``, ``CpuMeter``).

Run: ``python -m bench.accounts_login [--database postgresql,sqlite] [--rounds 5] [--seconds 8]
[--load-tool auto|wrk|httpx]``. Figures are printed and saved to
``bench/results/accounts_login.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import (
    CLK_TCK,
    ROOT,
    SECRET_KEY,
    AppServer,
    Check,
    Report,
    app_env,
    heading,
    percentile,
    scratch_database,
)

CONCURRENCY = 16
USERS = 32
PASSWORD = "correct horse battery staple"
TARGET_RATIO = 0.85
TARGET_HEALTH_P99_MS = 25.0
PROBE_INTERVAL = 0.02  # seconds between /health probes
UNLIMITED = 1_000_000_000  # a rate limit that never trips
MAX_REQUESTS = 5_000_000  # a bound on any load loop, besides its duration
RESULT_MARK = "BENCH_RESULT "


# --- the app -------------------------------------------------------------------------------


def app_settings() -> Any:
    """The settings the app will run with (``ISSUER_*`` and ``.env``, as read in ``ROOT``)."""
    from issuer.config import Settings

    return Settings(env="production", secret_key=SECRET_KEY)


def start_app(name: str, database_url: str, workers: int = 1, **settings: Any) -> AppServer:
    """The app as in production (hypercorn.toml) with ``ISSUER_<NAME>`` overrides."""
    env = app_env(database_url, env="production", **settings)
    return AppServer(name, env, workers=workers).start()


async def _create_users(url: str, names: list[str], password: str) -> None:
    from issuer import create_app
    from issuer.accounts.service import NewAccount
    from issuer.services import services_of

    # The app's own services, built (not served) on the bench database.
    app = create_app({"env": "production", "secret_key": SECRET_KEY, "database_url": url})
    services = services_of(app)
    try:
        made = await asyncio.gather(
            *(services.accounts.register(NewAccount(password, username=name)) for name in names)
        )
    finally:
        await services.close()
    if any(user is None for user in made):
        raise RuntimeError("some bench accounts already existed")


def create_users(url: str, count: int, password: str = PASSWORD) -> list[str]:
    """Register ``count`` accounts with the app's own service; returns their usernames."""
    names = [f"bench-user-{i:03d}" for i in range(count)]
    asyncio.run(_create_users(url, names, password))
    return names


def login_body(username: str, password: str = PASSWORD) -> str:
    return json.dumps({"username": username, "password": password})


# --- CPU time of processes ------------------------------------------------------------------


def postgres_backends(url: str) -> list[int]:
    """Process ids of the PostgreSQL backends connected to ``url``'s database (none for SQLite)."""
    if not url.startswith("postgresql"):
        return []

    async def query() -> list[int]:
        conn = await asyncpg.connect(url.replace("+asyncpg", "", 1))
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        return [int(row["pid"]) for row in rows]

    return asyncio.run(query())


def children_cpu() -> float:
    """CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _task_cpu(path: Path) -> float:
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def marked_result(proc: subprocess.Popen[str], timeout: float, what: str) -> Any:
    """Wait for ``proc``; the JSON it printed after ``RESULT_MARK`` (killed on timeout)."""
    try:
        output, errors = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    line = next((x for x in output.splitlines() if x.startswith(RESULT_MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{output}\n{errors or ''}")
    return json.loads(line.removeprefix(RESULT_MARK))


class CpuMeter:
    """CPU seconds used between ``start()`` and ``stop()`` by the app workers' event-loop threads
    (``loop``), by their other threads (``threads``: the hash pool; aiosqlite's threads on
    SQLite) and by the PostgreSQL backends connected to the app's database (``postgres``).

    A thread or backend born in between counts in full (a connection the pool opened mid-run);
    one that ended in between is left out.
    """

    def __init__(self, workers: list[int], database_url: str) -> None:
        self.workers = workers
        self.database_url = database_url
        self._start: dict[tuple[str, int], float] = {}

    def _read(self) -> dict[tuple[str, int], float]:
        found: dict[tuple[str, int], float] = {}
        for worker in self.workers:
            for task in Path(f"/proc/{worker}/task").iterdir():
                kind = "loop" if int(task.name) == worker else "threads"
                with contextlib.suppress(OSError, IndexError):
                    found[(kind, int(task.name))] = _task_cpu(task / "stat")
        for pid in postgres_backends(self.database_url):
            with contextlib.suppress(OSError, IndexError):
                found[("postgres", pid)] = _task_cpu(Path(f"/proc/{pid}/stat"))
        return found

    def start(self) -> CpuMeter:
        self._start = self._read()
        return self

    def stop(self) -> dict[str, float]:
        used = {"loop": 0.0, "threads": 0.0, "postgres": 0.0}
        for key, now in self._read().items():
            used[key[0]] += now - self._start.get(key, 0.0)
        return used


# --- load generation (wrk, or httpx in a process of its own) --------------------------------


@dataclass(frozen=True)
class RequestSpec:
    """One request the load generator sends (it rotates over a list of them)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass
class LoadResult:
    """What a load run did: answers by class, and the latency of every answer (ms)."""

    tool: str
    connections: int
    seconds: float
    ok: int  # 2xx and 3xx answers
    failed: int  # other statuses, socket errors, timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    load_cpu_seconds: float = 0.0  # CPU the load generator itself used

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rps": self.rps}


def load_tool(choice: str = "auto") -> str:
    """``wrk`` when asked or installed (``auto``), else ``httpx``."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "httpx"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed; use --load-tool httpx")
    return choice


def _lua_string(text: str) -> str:
    assert "]==]" not in text
    return f"[==[{text}]==]"


# Rotates over the prepared requests and prints a JSON summary (latencies in microseconds).
WRK_SCRIPT = """
local specs = __SPECS__
local prepared = {}
local counter = 0

function init(args)
  for i, s in ipairs(specs) do
    prepared[i] = wrk.format(s[1], s[2], s[3], s[4])
  end
end

function request()
  counter = counter + 1
  return prepared[counter % #prepared + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '__MARK__{"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_script(specs: list[RequestSpec]) -> str:
    rows = []
    for spec in specs:
        headers = ", ".join(
            f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in spec.headers.items()
        )
        body = "nil" if spec.body is None else _lua_string(spec.body)
        rows.append(
            f"  {{{_lua_string(spec.method)}, {_lua_string(spec.path)}, {{{headers}}}, {body}}}"
        )
    specs_table = "{\n" + ",\n".join(rows) + "\n}"
    return WRK_SCRIPT.replace("__SPECS__", specs_table).replace("__MARK__", RESULT_MARK)


def httpx_load(
    base_url: str, specs: list[RequestSpec], connections: int, seconds: float
) -> LoadResult:
    """The fallback load generator; meant to run in a process of its own."""
    return asyncio.run(_httpx_load(base_url, specs, connections, seconds))


async def _httpx_load(
    base_url: str, specs: list[RequestSpec], connections: int, seconds: float
) -> LoadResult:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0}
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=30.0, trust_env=False
    ) as client:
        start = time.monotonic()
        deadline = start + seconds

        sent = itertools.count()  # one rotation over the specs for all connections, as wrk's

        async def worker() -> None:
            while time.monotonic() < deadline and len(latencies) < MAX_REQUESTS:
                spec = specs[next(sent) % len(specs)]
                began = time.perf_counter()
                try:
                    response = await client.request(
                        spec.method, spec.path, headers=spec.headers, content=spec.body
                    )
                except httpx.HTTPError:
                    counts["failed"] += 1
                    await asyncio.sleep(0.01)
                    continue
                latencies.append(time.perf_counter() - began)
                counts["ok" if response.status_code < 400 else "failed"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - start
    ms = [x * 1000 for x in latencies] or [0.0]
    return LoadResult(
        "httpx", connections, elapsed, counts["ok"], counts["failed"],
        percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), max(ms),
    )  # fmt: skip


class LoadRun:
    """A closed-loop load of ``connections`` keep-alive connections for ``seconds``, in a
    process of its own (``wrk``, or the httpx fallback), so that the bench can probe meanwhile."""

    def __init__(
        self,
        base_url: str,
        specs: list[RequestSpec],
        *,
        connections: int,
        seconds: float,
        tool: str,
    ) -> None:
        self.base_url = base_url
        self.specs = specs
        self.connections = connections
        self.seconds = max(1, round(seconds))
        self.tool = tool
        self._proc: subprocess.Popen[str] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._future: Future[LoadResult] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> LoadRun:
        self._cpu0 = children_cpu()
        if self.tool == "wrk":
            self._tmp = tempfile.TemporaryDirectory(prefix="issuer-wrk-")
            script = Path(self._tmp.name) / "load.lua"
            script.write_text(wrk_script(self.specs))
            command = ["wrk", "-t1", f"-c{self.connections}", f"-d{self.seconds}s",
                       "--timeout", "30s", "-s", str(script), self.base_url]  # fmt: skip
            self._proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        else:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=context)
            self._future = self._pool.submit(
                httpx_load, self.base_url, self.specs, self.connections, self.seconds
            )
        return self

    def wait(self) -> LoadResult:
        try:
            result = self._wait_wrk() if self.tool == "wrk" else self._wait_httpx()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
        result.load_cpu_seconds = children_cpu() - self._cpu0
        return result

    def _wait_wrk(self) -> LoadResult:
        assert self._proc is not None
        data = marked_result(self._proc, self.seconds + 60, "wrk")
        errors = sum(data[k] for k in ("status", "connect", "read", "write", "timeout"))
        return LoadResult(
            "wrk", self.connections, data["duration_us"] / 1e6,
            data["requests"] - data["status"], errors,
            data["p50"] / 1000, data["p90"] / 1000, data["p99"] / 1000, data["max"] / 1000,
        )  # fmt: skip

    def _wait_httpx(self) -> LoadResult:
        assert self._pool is not None and self._future is not None
        try:
            return self._future.result(timeout=self.seconds + 120)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def run_load(base_url: str, specs: list[RequestSpec], **kwargs: Any) -> LoadResult:
    return LoadRun(base_url, specs, **kwargs).start().wait()


def probe(
    base_url: str, path: str, seconds: float, interval: float = PROBE_INTERVAL
) -> tuple[list[float], int]:
    """``GET path`` one at a time on one keep-alive connection, every ``interval`` seconds.

    Returns the latencies of the 200 answers (seconds) and the number of other outcomes.
    """
    latencies: list[float] = []
    failures = 0
    with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as client:
        client.get(path)  # open the connection
        start = time.monotonic()
        next_at = start
        for _ in range(int(seconds / interval) + 1):
            if time.monotonic() - start >= seconds:
                break
            began = time.perf_counter()
            try:
                ok = client.get(path).status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - began
            if ok:
                latencies.append(elapsed)
            else:
                failures += 1
            next_at = max(next_at + interval, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))
    return latencies, failures


def ms_stats(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "n": len(latencies),
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": max(latencies) * 1000,
    }


# --- the argon2 ceiling ----------------------------------------------------------------------


@dataclass
class Ceiling:
    threads: int
    verifies: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.verifies / self.seconds

    @property
    def cpu_ms_per_verify(self) -> float:
        return self.cpu_seconds / self.verifies * 1000


def ceiling_worker(params: dict[str, Any]) -> None:
    """In the ceiling's own process: verify on ``threads`` threads for ``seconds``; print JSON.

    argon2-cffi releases the GIL while hashing, as it does in the app's pool.
    """
    from argon2 import PasswordHasher
    from argon2.low_level import Type

    hasher = PasswordHasher(
        time_cost=params["time_cost"],
        memory_cost=params["memory_kib"],
        parallelism=params["parallelism"],
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    hasher.verify(stored, PASSWORD)  # warm up
    threads = int(params["threads"])
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    ends = [0.0] * threads
    window = {"deadline": 0.0}

    def work(index: int) -> None:
        barrier.wait()
        done = 0
        while time.perf_counter() < window["deadline"] and done < 100_000:
            hasher.verify(stored, PASSWORD)
            done += 1
        counts[index] = done
        ends[index] = time.perf_counter()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    cpu0 = time.process_time()
    began = time.perf_counter()
    window["deadline"] = began + float(params["seconds"])
    barrier.wait()
    for worker in workers:
        worker.join()
    result = {
        "threads": threads,
        "verifies": sum(counts),
        "seconds": max(ends) - began,  # each thread finishes the verify it started
        "cpu_seconds": time.process_time() - cpu0,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


class CeilingRun:
    """argon2id verifies per second with the app's parameters, in a fresh Python process."""

    def __init__(self, settings: Any, threads: int, seconds: float) -> None:
        self.seconds = seconds
        self.params = {
            "time_cost": settings.argon2_time_cost,
            "memory_kib": settings.argon2_memory_kib,
            "parallelism": settings.argon2_parallelism,
            "threads": threads,
            "seconds": seconds,
        }
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> CeilingRun:
        command = [sys.executable, "-m", "bench.accounts_login", "--ceiling-worker",
                   json.dumps(self.params)]  # fmt: skip
        # A session of its own, as the app has: with the kernel's autogroup scheduling, CPU is
        # shared between sessions first, so both compete with the rest of the machine alike.
        self._proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait(self) -> Ceiling:
        assert self._proc is not None
        return Ceiling(**marked_result(self._proc, self.seconds + 120, "ceiling worker"))


def measure_ceiling(settings: Any, threads: int, seconds: float) -> Ceiling:
    return CeilingRun(settings, threads, seconds).start().wait()


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class LoginRound:
    """One login run and the two ceilings measured just before and just after it."""

    before: Ceiling
    after: Ceiling
    load: LoadResult
    cpu: dict[str, float]  # CPU seconds: "loop", "threads", "postgres"

    @property
    def ceiling(self) -> float:
        return (self.before.rate + self.after.rate) / 2

    @property
    def ratio(self) -> float:
        return self.load.rps / self.ceiling


@dataclass
class Probe:
    """``/health`` latencies (seconds) measured under one condition."""

    label: str
    latencies: list[float]
    failed: int
    meanwhile: str = ""

    def stats(self) -> dict[str, float]:
        return ms_stats(self.latencies) | {"failed": self.failed}


def login_specs(users: list[str]) -> list[RequestSpec]:
    headers = {"Content-Type": "application/json", "User-Agent": "bench.accounts_login"}
    return [RequestSpec("POST", "/login", headers, login_body(name)) for name in users]


def check_login(base_url: str, username: str) -> str:
    """One login by hand: it must answer 200 with an access token, which is returned."""
    response = httpx.post(
        f"{base_url}/login",
        content=login_body(username),
        headers={"Content-Type": "application/json"},
        timeout=30,
        trust_env=False,
    )
    token = response.json().get("access_token") if response.status_code == 200 else None
    if not token:
        raise RuntimeError(f"login failed: {response.status_code} {response.text[:300]}")
    return str(token)


def login_rounds(
    app: AppServer, url: str, specs: list[RequestSpec], args: argparse.Namespace, tool: str
) -> list[LoginRound]:
    """Ceiling, logins, ceiling, logins, …, ceiling; each login round between two ceilings."""
    settings = app_settings()
    threads = settings.hash_threads
    workers = app.worker_pids
    rounds: list[LoginRound] = []
    before = measure_ceiling(settings, threads, args.ceiling_seconds)
    for number in range(1, args.rounds + 1):
        meter = CpuMeter(workers, url).start()
        load = run_load(
            app.url, specs, connections=args.concurrency, seconds=args.seconds, tool=tool
        )
        cpu = meter.stop()
        after = measure_ceiling(settings, threads, args.ceiling_seconds)
        rounds.append(LoginRound(before, after, load, cpu))
        print(
            f"  round {number}: ceiling {before.rate:5.1f} → {after.rate:5.1f} verifies/s; "
            f"logins {load.rps:5.1f}/s ({load.failed} failed) = {rounds[-1].ratio * 100:5.1f} %",
            flush=True,
        )
        before = after
    return rounds


def health_probes(
    app: AppServer, specs: list[RequestSpec], args: argparse.Namespace, tool: str
) -> list[Probe]:
    """``/health`` idle; while a bare argon2 process hashes on as many threads as the app's
    pool (the same CPU pressure without the app's work: the machine's floor); during the storm.
    """
    settings = app_settings()
    seconds = args.probe_seconds
    probes = [Probe("idle", *probe(app.url, "/health", seconds))]

    hog = CeilingRun(settings, settings.hash_threads, seconds + 2).start()
    time.sleep(1.0)  # past its start-up
    latencies, failed = probe(app.url, "/health", seconds)
    pressure = hog.wait()
    probes.append(
        Probe("argon2 process", latencies, failed, f"{pressure.rate:.1f} verifies/s meanwhile")
    )

    storm = LoadRun(
        app.url, specs, connections=args.concurrency, seconds=seconds + 2, tool=tool
    ).start()
    time.sleep(1.0)  # let the storm build up
    latencies, failed = probe(app.url, "/health", seconds)
    load = storm.wait()
    probes.append(
        Probe(f"{args.concurrency}-way login storm", latencies, failed,
              f"{load.rps:.1f} logins/s meanwhile")
    )  # fmt: skip
    return probes


def run_database(database: str, args: argparse.Namespace, tool: str) -> dict[str, Any]:
    settings = app_settings()
    heading(f"accounts_login · {database}")
    print(
        f"  argon2id t={settings.argon2_time_cost} m={settings.argon2_memory_kib} KiB "
        f"p={settings.argon2_parallelism}; hash pool {settings.hash_threads} threads; "
        f"load: {tool}, {args.concurrency} connections over {args.users} accounts",
        flush=True,
    )
    with scratch_database(database) as url:
        users = create_users(url, args.users)
        app = start_app(
            f"accounts_login_{database}",
            url,
            login_limit_per_ip=UNLIMITED,
            login_limit_per_account=UNLIMITED,
        )
        try:
            check_login(app.url, users[0])
            specs = login_specs(users)
            # Warm up: the connection pool fills, the hash pool starts its threads.
            run_load(app.url, specs, connections=args.concurrency, seconds=3, tool=tool)
            rounds = login_rounds(app, url, specs, args, tool)
            probes = health_probes(app, specs, args, tool)
        finally:
            app.stop()
    return figures_of(database, settings.hash_threads, rounds, probes)


def figures_of(
    database: str, threads: int, rounds: list[LoginRound], probes: list[Probe]
) -> dict[str, Any]:
    """Pool the rounds, print the figures of one database and return them."""
    logins = sum(r.load.ok for r in rounds)
    logins_rps = logins / sum(r.load.seconds for r in rounds)
    ceilings = [rounds[0].before] + [r.after for r in rounds]
    ceiling = sum(c.verifies for c in ceilings) / sum(c.seconds for c in ceilings)
    per_login = {
        kind: sum(r.cpu[kind] for r in rounds) / logins * 1000
        for kind in ("loop", "threads", "postgres")
    }
    per_login["load generator"] = sum(r.load.load_cpu_seconds for r in rounds) / logins * 1000
    per_verify = sum(c.cpu_seconds for c in ceilings) / sum(c.verifies for c in ceilings) * 1000
    server_cpu = per_login["loop"] + per_login["threads"] + per_login["postgres"]
    figures: dict[str, Any] = {
        "database": database,
        "hash_threads": threads,
        "ceiling_rps": ceiling,
        "logins_rps": logins_rps,
        "ratio": logins_rps / ceiling,
        "ratio_median_of_rounds": statistics.median(r.ratio for r in rounds),
        "failed_logins": sum(r.load.failed for r in rounds),
        "login_latency_ms": {
            "p50": statistics.median(r.load.p50_ms for r in rounds),
            "p99": max(r.load.p99_ms for r in rounds),
        },
        "cpu_ms_per_verify": per_verify,
        "cpu_ms_per_login": per_login,
        "cpu_share_argon2": per_verify / server_cpu,
        "health_ms": {p.label: p.stats() for p in probes},
        "rounds": [
            {
                "ceiling_before": r.before.rate,
                "ceiling_after": r.after.rate,
                "ratio": r.ratio,
                "load": r.load.as_dict(),
                "cpu_seconds": r.cpu,
            }
            for r in rounds
        ],
    }
    print(
        f"  logins {logins_rps:.1f}/s against a ceiling of {ceiling:.1f} verifies/s = "
        f"{figures['ratio'] * 100:.1f} % (median of rounds "
        f"{figures['ratio_median_of_rounds'] * 100:.1f} %); failed logins "
        f"{figures['failed_logins']}; login latency p50 {figures['login_latency_ms']['p50']:.0f} "
        f"ms, p99 {figures['login_latency_ms']['p99']:.0f} ms"
    )
    print(
        f"  CPU per login: event loop {per_login['loop']:.1f} ms, hash pool and other threads "
        f"{per_login['threads']:.1f} ms, PostgreSQL {per_login['postgres']:.1f} ms, "
        f"load generator {per_login['load generator']:.2f} ms; one verify alone "
        f"{per_verify:.1f} ms = {figures['cpu_share_argon2'] * 100:.1f} % of the server's CPU "
        "per login"
    )
    for p in probes:
        st = p.stats()
        print(
            f"  /health, {p.label + ':':<26} p50 {st['p50']:6.2f} ms  p99 {st['p99']:6.2f} ms  "
            f"max {st['max']:6.1f} ms  (n={st['n']}, failed {p.failed}) {p.meanwhile}",
            flush=True,
        )
    return figures


def print_summary(results: list[dict[str, Any]], concurrency: int) -> None:
    heading("accounts_login · summary")
    storm = f"{concurrency}-way login storm"
    print(
        f"  {'database':<11} {'ceiling/s':>9} {'logins/s':>9} {'ratio':>7} {'argon2 CPU':>10}"
        f"  {'/health p50/p99 ms: idle':>24} {'argon2 process':>15} {'login storm':>15}"
    )
    for r in results:
        health = r["health_ms"]
        cells = [f"{health[k]['p50']:6.2f}/{health[k]['p99']:<7.2f}"
                 for k in ("idle", "argon2 process", storm)]  # fmt: skip
        print(
            f"  {r['database']:<11} {r['ceiling_rps']:9.1f} {r['logins_rps']:9.1f} "
            f"{r['ratio'] * 100:6.1f}% {r['cpu_share_argon2'] * 100:9.1f}%  "
            f"{cells[0]:>24} {cells[1]:>15} {cells[2]:>15}"
        )
    print(
        f"  targets: logins/s ≥ {TARGET_RATIO * 100:.0f} % of the ceiling; /health p99 ≤ "
        f"{TARGET_HEALTH_P99_MS:.0f} ms during the storm. 'argon2 CPU': one verify's CPU as a "
        "share of the server's CPU per login (what the ratio would be on an idle machine)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="postgresql,sqlite", help="comma separated")
    parser.add_argument("--rounds", type=int, default=5, help="login rounds between ceilings")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of a login round")
    parser.add_argument("--ceiling-seconds", type=float, default=4.0)
    parser.add_argument("--probe-seconds", type=float, default=12.0, help="each /health phase")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--load-tool", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--ceiling-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_worker:
        ceiling_worker(json.loads(args.ceiling_worker))
        return

    tool = load_tool(args.load_tool)
    report = Report("accounts_login")
    results = []
    for database in [d.strip() for d in args.database.split(",") if d.strip()]:
        figures = run_database(database, args, tool)
        results.append(figures)
        report.data[database] = figures
        storm = figures["health_ms"][f"{args.concurrency}-way login storm"]
        report.checks.append(
            Check(f"{database}: shortfall of logins/s from the argon2 ceiling",
                  (1 - figures["ratio"]) * 100, (1 - TARGET_RATIO) * 100, "%")
        )  # fmt: skip
        report.checks.append(
            Check(f"{database}: /health p99 during a {args.concurrency}-way login storm",
                  storm["p99"], TARGET_HEALTH_P99_MS, "ms")
        )  # fmt: skip
    report.data.update(load_tool=tool, cpu_count=os.cpu_count(), args=vars(args))
    print_summary(results, args.concurrency)
    report.print_checks()
    print(f"  saved {report.save().relative_to(ROOT)}")


if __name__ == "__main__":
    main()
