"""``python -m issuer``: serve with hypercorn on ``$PORT`` (default 5000), like the originals.

One process. SIGTERM or Ctrl-C starts a graceful shutdown: open websockets are closed with 1001
at once, requests in flight get ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from issuer.app import create_app
from issuer.config import Settings


async def serve_until_signalled(app: Quart, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        app.shutdown_event.set()  # tell the websockets now, not after the graceful wait

    await serve(app, config, shutdown_trigger=shutdown_trigger)


def main() -> None:
    settings = Settings()
    config = Config.from_toml("hypercorn.toml")
    config.bind = [f"0.0.0.0:{settings.port}"]
    asyncio.run(serve_until_signalled(create_app(), config))


if __name__ == "__main__":
    main()
