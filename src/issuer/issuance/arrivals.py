"""Agent events that arrive before the record they name is stored, and the moment it is.

An agent answers a call and sends its events on its own clock: ACA-Py posts ``offer-sent``
before ``send-offer`` has returned, and a holder that answers at once can make ``done`` reach
a busy worker before that worker has stored the exchange id of the answer it is still
processing. Such an event waits here for its key (``("exchange_id", id)``,
``("invitation_msg_id", id)``…): this worker wakes it the moment it stores the key, and it
looks again on its own every ``recheck`` seconds, for a record another worker stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import suppress

Key = tuple[str, str]


class Arrivals:
    def __init__(self) -> None:
        self._waiting: dict[Key, set[asyncio.Future[None]]] = {}

    def stored(self, column: str, value: str | None) -> None:
        """``column`` = ``value`` was just stored: wake the events that wait for it."""
        if value is None:
            return
        for waiter in self._waiting.pop((column, value), ()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, keys: Iterable[Key], at_most: float) -> None:
        """Return once one of ``keys`` is stored in this worker, or after ``at_most`` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(keys)
        for key in keys:
            self._waiting.setdefault(key, set()).add(waiter)
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(waiter, at_most)
        finally:
            for key in keys:
                waiters = self._waiting.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiting[key]
