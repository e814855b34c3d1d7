"""The blog's listing: ``GET /api/posts?page=1`` and ``GET /home`` with 10 000 posts in
PostgreSQL, requests per second and p99 at 64 connections, and the query plans.

What is measured: one app (``hypercorn.toml``, one worker, ``ISSUER_ENV=production``) on a
scratch PostgreSQL database holding ``--posts`` (10 000) posts by 100 authors, written in bulk.
Each path is loaded for ``--seconds`` (10) from 64 keep-alive connections (``wrk`` when
installed, else ``bench.loadgen``); then the plans of the page query (first page and a deep
page) and of the count are printed with ``EXPLAIN (ANALYZE, BUFFERS)``. The listing reads
``ix_posts_created_at_id`` backwards (no sort of the table); pages are a bounded ``OFFSET``
(``per_page`` ≤ 50, a page past the end is not queried), because the pages are numbered (003's
``iter_pages`` links jump to any page), which keyset pagination cannot do.

Run: ``python -m bench.posts_listing [--posts 10000] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg

from bench.accounts_login import RequestSpec, load_tool, run_load, start_app
from bench.common import Check, Report, heading, scratch_database

CONNECTIONS = 64
TARGET_P99_MS = 250.0


async def fill(url: str, posts: int) -> None:
    conn = await asyncpg.connect(url.replace("+asyncpg", "", 1))
    try:
        users = [
            (f"author{i}", f"author{i}", f"{i:032x}") for i in range(100)
        ]  # username, key, entity id
        await conn.executemany(
            "INSERT INTO users (entity_id, username, username_key, verified, active, admin,"
            " mfa_enabled, created_at, event_seq) VALUES ($3::uuid, $1, $2, false, true, false,"
            " false, now(), 0)",
            users,
        )
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM users ORDER BY id")]
        now = time.time()
        rows = [
            (ids[n % len(ids)], f"Post number {n}", "Some text of the post. " * 20, now - n)
            for n in range(posts)
        ]
        await conn.executemany(
            "INSERT INTO posts (user_id, title, content, created_at, version)"
            " VALUES ($1, $2, $3, to_timestamp($4), 1)",
            rows,
        )
        await conn.execute("ANALYZE posts")
    finally:
        await conn.close()


async def plans(url: str, posts: int) -> dict[str, str]:
    conn = await asyncpg.connect(url.replace("+asyncpg", "", 1))
    queries = {
        "first page": "SELECT posts.*, users.username FROM posts JOIN users ON users.id ="
        " posts.user_id ORDER BY posts.created_at DESC, posts.id DESC LIMIT 5 OFFSET 0",
        "deep page": "SELECT posts.*, users.username FROM posts JOIN users ON users.id ="
        f" posts.user_id ORDER BY posts.created_at DESC, posts.id DESC LIMIT 5 OFFSET {posts - 5}",
        "count": "SELECT count(*) FROM posts",
    }
    found = {}
    try:
        for name, sql in queries.items():
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            found[name] = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--load-tool", choices=("auto", "wrk", "httpx"), default="auto")
    args = parser.parse_args()
    tool = load_tool(args.load_tool)
    report = Report("posts_listing")
    heading("posts_listing · postgresql")
    with scratch_database("postgresql") as url:
        asyncio.run(fill(url, args.posts))
        app = start_app("posts_listing", url, rate_limits_enabled="false")
        try:
            for path in ("/api/posts?page=1", "/home", "/health"):
                load = run_load(
                    app.url, [RequestSpec("GET", path)], connections=CONNECTIONS,
                    seconds=args.seconds, tool=tool,
                )  # fmt: skip
                report.data[path] = {
                    "rps": load.ok / load.seconds, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms,
                    "failed": load.failed,
                }  # fmt: skip
                print(
                    f"  GET {path:<20} {load.ok / load.seconds:7.1f} req/s  p50 {load.p50_ms:6.1f}"
                    f" ms  p99 {load.p99_ms:6.1f} ms  failed {load.failed}",
                    flush=True,
                )
                if path != "/health":
                    report.checks.append(
                        Check(f"GET {path} p99 at {CONNECTIONS} connections", load.p99_ms,
                              TARGET_P99_MS, "ms")
                    )  # fmt: skip
        finally:
            app.stop()
        found: dict[str, Any] = asyncio.run(plans(url, args.posts))
    for name, plan in found.items():
        print(f"  EXPLAIN {name}:\n    " + plan.replace("\n", "\n    "))
    report.data["plans"] = found
    report.print_checks()
    print(f"  saved {report.save()}")


if __name__ == "__main__":
    main()
