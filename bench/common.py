"""Shared plumbing: scratch databases, the app and the stubs as processes, /proc probes, figures.

Everything listens on and talks to 127.0.0.1 only. Every process a benchmark starts is stopped by
its own id (a process group we created) in a ``finally``; scratch databases are dropped likewise.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
WEBHOOK_KEY = "bench-webhook-key"
# One secret for every app process of a run: a cookie made by one worker must open on another.
SECRET_KEY = secrets.token_urlsafe(32)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_dir() -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "logs"
    path.mkdir(exist_ok=True)
    return path


# --- scratch databases ---------------------------------------------------------------------


@contextmanager
def scratch_database(kind: str) -> Iterator[str]:
    """A fresh database migrated with ``alembic upgrade head``; yields its SQLAlchemy URL.

    ``kind`` is ``sqlite`` (a file in a temporary directory) or ``postgresql`` (a database of its
    own on the local server, dropped afterwards).
    """
    from tests.conftest import _create_database, _drop_database, migrate

    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="issuer-bench-") as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/issuer.db"
            migrate(url)
            yield url
        return
    import asyncio

    name = f"issuer_bench_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_create_database(name))
    try:
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url = f"{base}/{name}"
        migrate(url)
        yield url
    finally:
        asyncio.run(_drop_database(name))


class RowLookup:
    """Reads ids the app keeps to itself (invitation, connection, exchange) from its database."""

    COLUMNS = ("invitation_msg_id", "connection_id", "exchange_id")

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: Any = None

    async def fetch(self, column: str, ids: list[str]) -> dict[str, str]:
        """``{session id: column value}`` for the given issuance session ids."""
        assert column in self.COLUMNS
        if self.url.startswith("sqlite"):
            import asyncio

            return await asyncio.to_thread(self._sqlite, column, ids)
        if self._pg is None:
            import asyncpg

            self._pg = await asyncpg.connect(self.url.replace("+asyncpg", "", 1))
        rows = await self._pg.fetch(
            f"SELECT id, {column} FROM issuance_sessions WHERE id = ANY($1::text[])", ids
        )
        return {r["id"]: r[column] for r in rows}

    def _sqlite(self, column: str, ids: list[str]) -> dict[str, str]:
        import sqlite3

        found: dict[str, str] = {}
        with sqlite3.connect(self.url.split(":///", 1)[1], timeout=15) as db:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT id, {column} FROM issuance_sessions WHERE id IN ({marks})"
                found.update(dict(db.execute(query, chunk).fetchall()))
        return found

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()


# --- the app and the stubs as processes ----------------------------------------------------


def app_env(database_url: str, **settings: Any) -> dict[str, str]:
    """``ISSUER_*`` for a development app on loopback (cookies without ``Secure`` over http)."""
    env = {
        "ISSUER_ENV": "development",
        "ISSUER_SECRET_KEY": SECRET_KEY,
        "ISSUER_DATABASE_URL": database_url,
        "ISSUER_WEBHOOK_API_KEY": WEBHOOK_KEY,
        "ISSUER_DEFAULT_LANGUAGE": "en",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update({f"ISSUER_{k.upper()}": str(v) for k, v in settings.items()})
    return env


# Hypercorn lets a closed websocket's ping task live up to ``websocket_ping_interval`` and
# shutdown waits ``graceful_timeout`` (10 s) for it; benchmarks stop their servers faster.
FAST_STOP = ("--graceful-timeout", "2")


class AppServer(ServerProcess):
    """``ServerProcess`` on a free port, logging to ``bench/results/logs/NAME.log``.

    ``extra_args`` are hypercorn options added after ``--config hypercorn.toml``; ``worker_pids``
    are hypercorn's worker processes (its parent only supervises them).
    """

    def __init__(
        self, name: str, env: dict[str, str], *, workers: int = 1, extra_args: Sequence[str] = ()
    ) -> None:
        log_path = log_dir() / f"{name}.log"
        log_path.write_text("")
        args = (*FAST_STOP, *extra_args)
        super().__init__(free_port(), env, log_path, workers, args=args)

    def start(self, timeout: float = 60.0) -> AppServer:
        super().start(timeout)
        return self

    @property
    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return [pid for pid in children(self.proc.pid) if b"spawn_main" in cmdline(pid)]


class StubProcess:
    """One of the bench's agent stubs (``bench.fake_acapy``, ``bench.fake_rest``) as a process."""

    def __init__(self, module: str, *args: str) -> None:
        self.module = module
        self.args = list(args)
        self.port = free_port()
        self.log_path = log_dir() / f"{module.rsplit('.', 1)[-1]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubProcess:
        command = [sys.executable, "-m", self.module, "--port", str(self.port), *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_http(f"{self.url}/_bench/stats", self.proc, 20, lambda: self.log_path.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET`` (or ``POST`` ``body`` to) one of the ``/_bench`` routes; blocking, small."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method="POST" if data else "GET"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.call("/_bench/stats")

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self.call("/_bench/config", settings)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, tail: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited:\n{tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{tail()}")


# --- /proc probes ---------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def rss_mb(pid: int) -> float:
    """Resident memory (``VmRSS``) of one process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def listen_overflows() -> int:
    """Connections the kernel refused because a listen queue was full (system-wide counter).

    A client whose SYN was dropped retries after 1 s, so each one costs a visitor a second.
    """
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def hypercorn_backlog() -> int:
    """The listen backlog ``hypercorn.toml`` configures (hypercorn's default: 100)."""
    import tomllib

    with open(ROOT / "hypercorn.toml", "rb") as config:
        return int(tomllib.load(config).get("backlog", 100))


def thread_cpu_ns(pid: int) -> int:
    """CPU time of a process's live threads in ns (``schedstat``: finer than ``cpu_seconds``)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def postmaster_pid() -> int | None:
    """The local PostgreSQL server's main process (a ``postgres`` whose parent is not one)."""
    from tests.support.servers import processes

    found = {pid: (comm, int(fields[1])) for pid, comm, fields in processes()}
    for pid, (comm, parent) in found.items():
        if comm == "postgres" and found.get(parent, ("", 0))[0] != "postgres":
            return pid
    return None


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its living descendants."""
    from tests.support.servers import process_tree

    total = 0.0
    for member in process_tree(pid):
        try:
            total += cpu_seconds(member)
        except (OSError, IndexError):
            continue
    return total


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds the PostgreSQL server has used so far: its processes (backends, WAL writer,
    checkpointer, …) plus the backends that exited, whose time the kernel adds to the
    postmaster's ``cutime``/``cstime`` once it has reaped them. Other databases' work counts
    too (benchmarks run one at a time: ``flock /tmp/bench.lock``)."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return reaped + tree_cpu(postmaster)


class CpuMeter:
    """CPU seconds used by named processes between ``__enter__`` and ``__exit__``.

    ``pids`` are single processes (all their threads); ``probes`` are other cumulative CPU
    counters (e.g. ``postgres_cpu``), called at both ends."""

    def __init__(
        self, pids: dict[str, int], probes: dict[str, Callable[[], float]] | None = None
    ) -> None:
        self.pids = pids
        self.probes = probes or {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now.update({name: probe() for name, probe in self.probes.items()})
        return now

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.monotonic() - self._t0
        self.used = {n: v - self._start[n] for n, v in self._read().items()}

    def describe(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.used.items())
        return f"CPU seconds over {self.wall:.1f} s wall: {parts}"


# --- figures --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """n, mean, p50, p90, p99 and max of a sample (seconds), scaled (default: to ms)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values) * scale,
        "p50": percentile(values, 50) * scale,
        "p90": percentile(values, 90) * scale,
        "p99": percentile(values, 99) * scale,
        "max": max(values) * scale,
    }


def fmt(stats: dict[str, float], unit: str = "ms") -> str:
    if not stats.get("n"):
        return "no samples"
    return (
        f"n={stats['n']:<4} p50 {stats['p50']:7.1f} {unit}  p90 {stats['p90']:7.1f} {unit}  "
        f"p99 {stats['p99']:7.1f} {unit}  max {stats['max']:7.1f} {unit}"
    )


@dataclass
class Check:
    """One target of the issue: ``value`` must be ≤ ``target`` (``None``: not measured)."""

    label: str
    value: float | None
    target: float
    unit: str

    @property
    def ok(self) -> bool:
        return self.value is not None and self.value <= self.target

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.2f}"
        verdict = "PASS" if self.ok else "FAIL"
        return (
            f"{verdict}  {self.label}: {shown} {self.unit} (target ≤ {self.target:g} {self.unit})"
        )


@dataclass
class Report:
    """What one benchmark hands back to ``python -m bench``."""

    name: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        body = {
            "name": self.name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine_load(),
            "checks": [asdict(c) | {"ok": c.ok} for c in self.checks],
            "notes": self.notes,
            "data": self.data,
        }
        path.write_text(json.dumps(body, indent=2, default=str))
        return path

    def print_checks(self) -> None:
        for check in self.checks:
            print(f"  {check.line()}")
        for note in self.notes:
            print(f"  note: {note}")


def machine_load() -> str:
    """The 1/5/15-minute load averages and the core count, to judge how quiet the machine was."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def heading(text: str) -> None:
    print(f"\n=== {text} ===  ({machine_load()})", flush=True)
    if os.getloadavg()[0] > (os.cpu_count() or 1) * 0.75:
        print("  warning: the machine is busy with other work; figures will be pessimistic")
