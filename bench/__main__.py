"""``python -m bench [NAME ...]``: run benchmarks in sequence, then print every target's verdict.

Each benchmark runs in its own process (``python -m bench.NAME``: a clean event loop, file
descriptors and memory for each), bounded by ``TIMEOUT`` seconds; the summary is read back from
the ``bench/results/NAME.json`` it wrote. With no names, ``BENCHMARKS`` run in this order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import RESULTS, ROOT, Check, machine_load

BENCHMARKS = (
    # issue 2: the portal
    "push_latency",
    "concurrent_flows",
    "polling",
    "worker_class",
    # issue 3: accounts
    "accounts_login",
    "accounts_reads",
    # issue 4: email and the outbox
    "signup_smtp",
    "outbox_throughput",
    # issue 8: MFA
    "mfa_login",
    # issue 10: live entity events (the Pusher protocol)
    "pusher_fanout",
    # issue 11: posts
    "posts_listing",
    # issue 12: parity with the originals (bench.legacy), API and portal (PARITY_QUICK=1: short)
    "parity",
    # issue 12: the cheap issuance flow (app CPU per flow; concurrent_flows runs both targets)
    "flow_cpu",
)
TIMEOUT = 900


def run_one(name: str) -> tuple[float, str]:
    started = time.time()
    try:
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, timeout=TIMEOUT)
        status = "ok" if code.returncode == 0 else f"exit code {code.returncode}"
    except subprocess.TimeoutExpired:
        status = f"stopped after {TIMEOUT} s"
    return time.time() - started, status


def summary(name: str, since: float) -> list[str]:
    path = RESULTS / f"{name}.json"
    if not path.exists() or path.stat().st_mtime < since:
        return ["  (no results written)"]
    body = json.loads(path.read_text())
    lines = []
    for check in body.get("checks", []):
        shown = Check(check["label"], check["value"], check["target"], check["unit"])
        lines.append(f"  {shown.line()}")
    data = body.get("data", {})
    for key, winner in ((k, v) for k, v in data.items() if k.startswith("faster_")):
        how = "" if winner.get("significant", True) else " (not significant)"
        lines.append(f"  GET {key[7:]}: {winner['class']} faster by {winner['by_pct']:.1f} %{how}")
    return lines or ["  (figures only, no targets)"]


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    started = time.time()
    outcomes = {}
    for name in names:
        outcomes[name] = (time.time(), *run_one(name))
    print(f"\n=== summary ({time.time() - started:.0f} s; now {machine_load()}) ===")
    for name, (since, seconds, status) in outcomes.items():
        print(f"{name} ({seconds:.0f} s, {status})")
        print("\n".join(summary(name, since)))


if __name__ == "__main__":
    main()
