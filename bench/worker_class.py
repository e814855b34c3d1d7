"""hypercorn's ``uvloop`` vs ``asyncio`` worker class: requests/s on ``GET /health`` and ``GET /``.

What is measured: requests per second the app answers with a fixed number of keep-alive
connections for a fixed time, with each worker class (``--worker-class``, everything else from
``hypercorn.toml``, one worker, SQLite), plus the worker's CPU use in that time (on 2 cores the
load generator competes for CPU: a worker below ~100 % CPU was not the bottleneck).

Routes: ``GET /health`` (trivial: Quart, quart-schema's response validation, security headers,
access log) with 50 connections, and ``GET /`` (the real page: a session row, an invitation from
``bench.fake_acapy``, a QR code, the template) with 4 connections — more and SQLite writers start
to time out (see the report).

Load generator: ``wrk -t1`` in its own process when installed (Debian: ``apt-get install wrk``),
otherwise ``bench.loadgen`` (raw asyncio HTTP/1.1, also its own process). Rounds alternate the
order of the classes; the best round of each class is compared.

Run alone: ``python -m bench.worker_class [--duration 3] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from typing import Any

from bench.common import (
    ROOT,
    AppServer,
    Report,
    StubProcess,
    app_env,
    cpu_seconds,
    heading,
    raise_nofile,
    scratch_database,
)

CLASSES = ("uvloop", "asyncio")
ROUTES = {"/health": 50, "/en": 4}  # path → connections
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
# Differences below this are within the run-to-run spread on a 2-core machine.
NOISE_PCT = 5.0


def load(url: str, connections: int, duration: float, warmup: float = 1.0) -> dict[str, Any]:
    """Run the load generator against ``url``: rps, errors and latency (ms)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        command = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            url,
            "-c",
            str(connections),
            "-d",
            str(duration),
            "--warmup",
            str(warmup),
        ]
        output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        return {"generator": "bench.loadgen", **json.loads(output.stdout)}
    # wrk takes whole seconds.
    if warmup:
        subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(warmup))}s", url],
            capture_output=True,
            check=True,
        )
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {"generator": "wrk", **parse_wrk(text)}


def parse_wrk(text: str) -> dict[str, Any]:
    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(found.group(1)) * UNITS[found.group(2)] if found else float("nan")

    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(g) for g in socket.groups()) if socket else 0
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "errors": errors,
        "rps": rps,
        "latency_ms": {"p50": latency("50"), "p99": latency("99")},
    }


def measure(worker_class: str, env: dict[str, str], duration: float) -> dict[str, Any]:
    server = AppServer(f"worker-{worker_class}", env, extra_args=["--worker-class", worker_class])
    server.start()
    try:
        worker = server.worker_pids[0]
        results = {}
        for path, connections in ROUTES.items():
            before = cpu_seconds(worker)
            result = load(f"{server.url}{path}", connections, duration)
            # The warm-up is inside the window: the CPU share is a slight under-estimate.
            result["worker_cpu_pct"] = 100 * (cpu_seconds(worker) - before) / (duration + 1)
            results[path] = result
        return results
    finally:
        server.stop()


def run(duration: float = 3.0, rounds: int = 2) -> Report:
    heading("hypercorn worker class: uvloop vs asyncio")
    raise_nofile()
    report = Report("worker_class")
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CLASSES}
    with scratch_database("sqlite") as url:
        stub = StubProcess("bench.fake_acapy").start()
        try:
            env = app_env(url, agent="acapy", acapy_admin_url=stub.url)
            for r in range(rounds):
                for worker_class in CLASSES if r % 2 == 0 else CLASSES[::-1]:
                    runs[worker_class].append(measure(worker_class, env, duration))
        finally:
            stub.stop()

    generator = runs[CLASSES[0]][0]["/health"]["generator"]
    print(f"  load generator: {generator}; {duration:g} s per run, {rounds} round(s), best shown")
    best: dict[str, dict[str, Any]] = {}
    for path, connections in ROUTES.items():
        for worker_class in CLASSES:
            top = max((run[path] for run in runs[worker_class]), key=lambda x: x["rps"])
            best.setdefault(path, {})[worker_class] = top
            p50, p99 = (top["latency_ms"].get(p, float("nan")) for p in ("p50", "p99"))
            print(
                f"  GET {path:8} c={connections:<3} {worker_class:8} {top['rps']:8.0f} req/s  "
                f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  errors {top['errors']}  "
                f"worker CPU {top['worker_cpu_pct']:.0f} %"
            )
        rounds_rps = {c: [round(run[path]["rps"]) for run in runs[c]] for c in CLASSES}
        a, b = (best[path][c]["rps"] for c in CLASSES)
        winner, ratio = (CLASSES[0], a / b) if a >= b else (CLASSES[1], b / a)
        by = (ratio - 1) * 100
        verdict = (
            f"{winner} is faster by {by:.1f} %"
            if by >= NOISE_PCT
            else (f"no significant difference ({winner} ahead by {by:.1f} % < {NOISE_PCT:g} %)")
        )
        print(f"  → GET {path}: {verdict}; req/s per round: {rounds_rps}")
        report.data[f"faster_{path}"] = {
            "class": winner,
            "by_pct": by,
            "significant": by >= NOISE_PCT,
        }
    report.data.update(
        generator=generator, duration_s=duration, rounds=rounds, best=best, runs=runs
    )
    report.notes.append(
        "choose worker_class in hypercorn.toml from GET /health (framework overhead); "
        "GET / is dominated by the page's own CPU (QR code), where the loop matters little"
    )
    report.save()
    report.print_checks()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    run(args.duration, args.rounds)


if __name__ == "__main__":
    main()
