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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

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

    @contextmanager
    def watching(self, keys: Iterable[Key]) -> Iterator[Watch]:
        """Watch ``keys`` for the block: a key stored any time after entry (even before
        ``Watch.stored`` is awaited) ends the wait. Watch before looking for the record, so that
        a store between the look and the wait is not missed."""
        watch = Watch()
        keys = list(keys)
        for key in keys:
            self._waiting.setdefault(key, set()).add(watch.future)
        try:
            yield watch
        finally:
            for key in keys:
                waiters = self._waiting.get(key)
                if waiters is not None:
                    waiters.discard(watch.future)
                    if not waiters:
                        del self._waiting[key]


class Watch:
    """One ``Arrivals.watching`` block's wake-up."""

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stored(self, at_most: float) -> None:
        """Return once a watched key was stored in this worker, or after ``at_most`` seconds."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self.future, at_most)
