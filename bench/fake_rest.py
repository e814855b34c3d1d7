"""A fake of the original portal's connect/issue REST API (CONTRACTS.md §1), with human timings.

``POST /connection/invitation`` → ``{"invitationUrl", "connectionId"}``;
``GET /connection/{id}`` → the JSON string ``"established"`` once the holder has scanned the QR
code, ``scan_delay`` seconds after the invitation was made, ``"invitation"`` before;
``POST /issue/process`` → ``{"processId"}``; ``GET /issue/process/{id}/state`` →
``"IN_PROGRESS"`` until the holder accepts, ``accept_delay`` seconds after the offer, then
``"DONE"``. ``GET /`` answers 200 (the adapter's readiness probe).

Requests are counted per route and per connection / process id, and the moment each one turned
final is kept (``time.monotonic()``, the same clock in every process on Linux), so a benchmark can
attribute agent requests to issuances and measure how late a poll noticed the change.

It runs on ``bench.stub_server`` (a raw asyncio server: a few tens of µs of CPU per call, where
hypercorn cost milliseconds), since it shares the machine's 2 cores with the portal it answers.

Run alone: ``python -m bench.fake_rest --port 8040 [--scan-delay 5 --accept-delay 5]``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.stub_server import Request, StubBase, serve


@dataclass
class FakeRestApi(StubBase):
    scan_delay: float = 5.0
    accept_delay: float = 5.0
    # id → monotonic time at which it turns final (established / DONE)
    connections: dict[str, float] = field(default_factory=dict)
    processes: dict[str, float] = field(default_factory=dict)
    per_id: Counter[str] = field(default_factory=Counter)

    def handle(self, request: Request) -> tuple[int, Any, str]:
        method, path = request.method, request.path
        now = time.monotonic()
        if method == "POST" and path == "/connection/invitation":
            connection_id = str(uuid.uuid4())
            self.connections[connection_id] = now + self.scan_delay
            url = f"https://agent.example/invitation?c_i={connection_id}&padding={'x' * 400}"
            return 200, {"invitationUrl": url, "connectionId": connection_id}, "POST invitation"
        if method == "GET" and path.startswith("/connection/"):
            connection_id = path.rsplit("/", 1)[1]
            self.per_id[connection_id] += 1
            ready_at = self.connections.get(connection_id)
            if ready_at is None:
                return 404, "no such connection", "GET connection"
            return 200, "established" if now >= ready_at else "invitation", "GET connection"
        if method == "POST" and path == "/issue/process":
            process_id = str(uuid.uuid4())
            self.processes[process_id] = now + self.accept_delay
            return 200, {"processId": process_id}, "POST process"
        if method == "GET" and path.startswith("/issue/process/") and path.endswith("/state"):
            process_id = path.split("/")[3]
            self.per_id[process_id] += 1
            done_at = self.processes.get(process_id)
            if done_at is None:
                return 404, "no such process", "GET process state"
            return 200, "DONE" if now >= done_at else "IN_PROGRESS", "GET process state"
        if method == "GET" and path == "/":
            return 200, "ok", "GET / (ready probe)"
        return 404, f"no route {method} {path}", "unknown"

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "per_id": dict(self.per_id),
            "connections": self.connections,
            "processes": self.processes,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scan-delay", type=float, default=5.0)
    parser.add_argument("--accept-delay", type=float, default=5.0)
    args = parser.parse_args()
    serve(FakeRestApi(scan_delay=args.scan_delay, accept_delay=args.accept_delay), args.port)


if __name__ == "__main__":
    main()
