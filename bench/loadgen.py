"""A closed-loop HTTP/1.1 load generator, the fallback when ``wrk`` is not installed.

``connections`` keep-alive connections each send ``GET path`` and wait for the whole answer
before sending the next, for ``duration`` seconds after ``warmup`` seconds, like ``wrk -t1``. It
speaks HTTP/1.1 over raw asyncio streams on uvloop rather than through httpx, because the generator
shares the machine with the server and must cost far less per request than the server does
(httpx spends a few hundred µs per request, as much as a trivial Quart route). Answers must carry
``Content-Length`` (Quart's do). Prints one JSON object: requests, errors, rps, latency in ms.

Run alone: ``python -m bench.loadgen --url http://127.0.0.1:5000/health -c 50 -d 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

import uvloop

from bench.common import summarize


async def connection(
    host: str,
    port: int,
    path: str,
    until: float,
    start: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.perf_counter()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").lower().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            await reader.readexactly(int(headers["content-length"]))
            if now >= start:
                latencies.append(time.perf_counter() - now)
                if not lines[0].startswith(("http/1.1 2", "http/1.1 3")):
                    errors.append(1)
            if headers.get("connection") == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def generate(url: str, connections: int, duration: float, warmup: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    start = time.perf_counter() + warmup
    until = start + duration
    latencies: list[float] = []
    errors: list[int] = []
    results = await asyncio.gather(
        *(
            connection(host, port, parts.path or "/", until, start, latencies, errors)
            for _ in range(connections)
        ),
        return_exceptions=True,
    )
    broken = sum(isinstance(r, BaseException) for r in results)
    return {
        "requests": len(latencies),
        "errors": len(errors) + broken,
        "rps": len(latencies) / duration,
        "latency_ms": summarize(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(generate(args.url, args.connections, args.duration, args.warmup))))


if __name__ == "__main__":
    main()
