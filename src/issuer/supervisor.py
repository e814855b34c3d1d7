"""One supervisor for every long-running task of a worker: the outbox dispatcher, the sweeper,
the PostgreSQL LISTEN loop, the pollers of agents that send no events.

A loop is an ``async`` function of one argument, the ``stopping`` event, which it watches to
return cleanly (finishing the transaction in hand). If a loop raises, the supervisor logs it and
starts it again after a backoff (0.5 s, doubling up to 30 s, back to 0.5 s after a minute of
health). ``stop()`` sets ``stopping``, waits for the loops to return, then cancels the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

log = logging.getLogger(__name__)
RESTARTS = Counter(
    "issuer_task_restarts_total", "Supervised tasks restarted after a crash", ["task"]
)
HEALTHY_AFTER = 60.0  # seconds a loop must run before its backoff starts over

Loop = Callable[[asyncio.Event], Awaitable[object]]


class Supervisor:
    def __init__(self, *, min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stopping = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, name: str) -> bool:
        return self.task(name) is not None

    def task(self, name: str) -> asyncio.Task[None] | None:
        """The running task of ``name``, if any. A task that has just finished is not running,
        though asyncio runs its done-callback (which forgets it) one loop step later."""
        task = self._tasks.get(name)
        return None if task is None or task.done() else task

    def run(self, name: str, loop: Loop) -> None:
        """Run ``loop(stopping)`` until it returns or the supervisor stops; restart on a crash.
        A name already running is left alone."""
        if name in self or self.stopping.is_set():
            return
        task = asyncio.create_task(self._keep_running(name, loop), name=name)
        self._tasks[name] = task
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        name = task.get_name()
        if self._tasks.get(name) is task:  # not a successor started under the same name
            del self._tasks[name]

    async def _keep_running(self, name: str, loop: Loop) -> None:
        delay = self.min_backoff
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                await loop(self.stopping)
                return
            except Exception:
                RESTARTS.labels(name.split(":", 1)[0]).inc()
                log.exception("task %s crashed; restarting in %.1fs", name, delay)
            if time.monotonic() - started > HEALTHY_AFTER:
                delay = self.min_backoff
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, self.max_backoff)

    def start(self) -> None:
        """Allow loops to run (again): called when the app starts serving."""
        self.stopping.clear()

    async def stop(self, grace: float = 5.0) -> None:
        """Ask every loop to return; cancel those still running after ``grace`` seconds."""
        self.stopping.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            log.warning("task %s did not stop in %.0fs; cancelling it", task.get_name(), grace)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
