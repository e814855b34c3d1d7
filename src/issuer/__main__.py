"""``python -m issuer``: serve with hypercorn on ``$PORT`` (default 5000), like the originals."""

from __future__ import annotations

import asyncio

from hypercorn.asyncio import serve
from hypercorn.config import Config

from issuer.app import create_app
from issuer.config import Settings


def main() -> None:
    settings = Settings()
    config = Config.from_toml("hypercorn.toml")
    config.bind = [f"0.0.0.0:{settings.port}"]
    asyncio.run(serve(create_app(), config))


if __name__ == "__main__":
    main()
