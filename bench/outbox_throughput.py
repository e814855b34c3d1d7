"""Outbox throughput: queued emails delivered per second by one dispatcher to a local SMTP server.

What is measured: ``N`` rendered verification-style emails are committed to the outbox of a
scratch database (not timed beyond the enqueue figure), then one ``Dispatcher`` with the app's
``Delivery`` drains them to aiosmtpd (``aiosmtpd.handlers.Sink``, its own process, so it does
not share this process's CPU) over real loopback SMTP: claim a batch (``UPDATE … RETURNING``,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL), send each message on its own SMTP connection
(aiosmtplib), mark it sent. The figure is ``N`` / wall time from the first claim to the last
mark, for SQLite and PostgreSQL and each ``--batches`` size (the app's default batch is 20).
Afterwards every row must be marked sent, and the dispatcher must have delivered each once.

Run alone: ``python -m bench.outbox_throughput [--emails 1000] [--batches 20,50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from sqlalchemy import delete, func, select

from bench.common import ROOT, Report, free_port, heading, log_dir, scratch_database
from issuer.clock import SystemClock
from issuer.db import Database
from issuer.lib.mail import SmtpSettings
from issuer.outbox.delivery import Delivery
from issuer.outbox.dispatcher import Dispatcher
from issuer.outbox.models import OutboxMessage
from issuer.outbox.service import Outbox

TIMEOUT = 300.0  # seconds, per drain


class SinkProcess:
    """``python -m aiosmtpd -c aiosmtpd.handlers.Sink`` on 127.0.0.1, stopped by its pid."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SinkProcess:
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                   "-l", f"127.0.0.1:{self.port}"]  # fmt: skip
        with open(log_dir() / "outbox_sink.log", "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the SMTP sink exited")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the SMTP sink did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


async def enqueue(db: Database, n: int, tag: str) -> float:
    """Commit ``n`` emails (200 per transaction); the seconds it took."""
    writer = Outbox(SystemClock(), wake=lambda: None)
    start = time.perf_counter()
    for first in range(0, n, 200):
        async with db.transaction() as session:
            for i in range(first, min(first + 200, n)):
                writer.email(
                    session, "verify_email", to=f"bench-{tag}-{i}@mail.example", language="en",
                    context={"name": "Bench", "hours": 1,
                             "link": f"https://issuer.example/verify/{'x' * 43}/{'y' * 43}"},
                )  # fmt: skip
    return time.perf_counter() - start


async def drain(db: Database, port: int, batch: int, n: int) -> dict[str, Any]:
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=10)
    delivery = Delivery(smtp=smtp, publisher=None, development=False)
    delivered: Counter[int] = Counter()

    async def deliver(message: OutboxMessage) -> None:
        await delivery(message)
        delivered[message.id] += 1

    dispatcher = Dispatcher(db, deliver, batch=batch)
    start = time.perf_counter()
    while await dispatcher.run_once():
        pass
    elapsed = time.perf_counter() - start
    async with db.session() as session:
        sent = await session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_not(None)))
        failed = await session.scalar(
            select(func.count()).where(OutboxMessage.failed_at.is_not(None))
        )
    twice = sum(1 for count in delivered.values() if count > 1)
    if sent != n or twice or len(delivered) != n:
        raise RuntimeError(f"sent {sent} of {n}, failed {failed}, delivered twice {twice}")
    return {"emails": n, "seconds": elapsed, "per_second": n / elapsed}


async def measure(url: str, port: int, n: int, batches: list[int]) -> dict[str, Any]:
    db = Database(url)
    results: dict[str, Any] = {}
    try:
        for batch in batches:
            async with db.transaction() as session:
                await session.execute(delete(OutboxMessage))
            enqueue_s = await enqueue(db, n, f"b{batch}")
            result = await asyncio.wait_for(drain(db, port, batch, n), TIMEOUT)
            result["enqueue_per_second"] = n / enqueue_s
            results[f"batch_{batch}"] = result
            print(f"  batch {batch:>3}: {result['per_second']:6.0f} emails/s "
                  f"({n} in {result['seconds']:.1f} s); "
                  f"enqueue {result['enqueue_per_second']:.0f}/s", flush=True)  # fmt: skip
    finally:
        await db.dispose()
    return results


def run(kinds: list[str], n: int, batches: list[int]) -> Report:
    heading(f"outbox throughput: {n} emails, one dispatcher → aiosmtpd sink")
    report = Report("outbox_throughput")
    sink = SinkProcess().start()
    try:
        for kind in kinds:
            print(f" {kind}:")
            with scratch_database(kind) as url:
                report.data[kind] = asyncio.run(measure(url, sink.port, n, batches))
    finally:
        sink.stop()
    report.notes.append(
        "one SMTP connection per message (aiosmtplib.send); the sink runs in its own process; "
        "emails/s = N / (first claim → last row marked sent)"
    )
    report.save()
    report.print_checks()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--batches", default="20,50")
    args = parser.parse_args()
    run(
        [k for k in args.databases.split(",") if k in ("sqlite", "postgresql")],
        min(args.emails, 20000),
        [min(int(b), 500) for b in args.batches.split(",")],
    )


if __name__ == "__main__":
    main()
