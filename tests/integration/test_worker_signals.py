"""A hypercorn worker that gets SIGTERM passes it on to its master only when the master did not
get it too (``issuer.web.server.sigterm_forwarder``).

hypercorn's master sets the workers' shutdown event inside its Python signal handler, and
``multiprocessing.Event`` takes a lock that is not reentrant: a second SIGTERM landing while the
first handler holds it deadlocks the master. With a signal to the whole process group (systemd,
supervisor's ``stopasgroup``), the worker's forward was that second SIGTERM: about one
group stop in 20–60 hung until SIGKILL. Here the master is a real process that counts the
SIGTERMs it receives and, like hypercorn's, sets the shared event in its handler
(``tests.support.fake_master``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from issuer.web.server import FORWARD_AFTER, sigterm_forwarder
from tests.support.fake_master import fake_master

CONTEXT = multiprocessing.get_context("spawn")


class Master:
    def __init__(self) -> None:
        self.event = CONTEXT.Event()
        self.conn, child = CONTEXT.Pipe()
        self.process: BaseProcess = CONTEXT.Process(target=fake_master, args=(self.event, child))
        self.process.start()
        assert self.conn.poll(30) and self.conn.recv() == "ready"

    def sigterms(self) -> int:
        self.conn.send("count")
        assert self.conn.poll(5)
        return int(self.conn.recv())

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send("exit")
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class LookedAt:
    """The master's shutdown event, noting when the forwarder looks at it: the moment it decides
    whether to forward. Every SIGTERM it sent is pending in the master by then, so the master's
    next count includes it (a signal is handled before the master reads its next request)."""

    def __init__(self, event: Any) -> None:
        self.event = event
        self.looks = 0
        self.looked = asyncio.Event()

    def is_set(self) -> bool:
        self.looks += 1
        self.looked.set()
        return bool(self.event.is_set())

    async def decided(self) -> None:
        await asyncio.wait_for(self.looked.wait(), FORWARD_AFTER + 10)


@pytest.fixture
def master() -> Iterator[Master]:
    running = Master()
    try:
        yield running
    finally:
        running.stop()


async def test_a_signal_to_the_group_reaches_the_master_once(master: Master) -> None:
    event = LookedAt(master.event)
    on_sigterm = sigterm_forwarder(master.process, event, pytest.fail)  # production's wait
    os.kill(master.process.pid or 0, signal.SIGTERM)  # the group's SIGTERM, to the master…
    on_sigterm()  # … and to the worker, at the same moment
    await event.decided()
    assert master.sigterms() == 1  # the worker stayed silent


async def test_a_signal_to_the_worker_alone_reaches_the_master_once(master: Master) -> None:
    event = LookedAt(master.event)
    on_sigterm = sigterm_forwarder(master.process, event, pytest.fail, after=0.2)
    on_sigterm()
    on_sigterm()  # repeated (an impatient operator): still one SIGTERM for the master
    await event.decided()
    await asyncio.sleep(0.2)  # a second forward would have been due before this sleep ends
    assert event.looks == 1 and master.sigterms() == 1
    assert master.event.is_set()  # the master started the shutdown


async def test_without_a_master_the_worker_shuts_down_by_itself(master: Master) -> None:
    master.stop()
    called: list[bool] = []
    on_sigterm = sigterm_forwarder(master.process, master.event, lambda: called.append(True))
    on_sigterm()
    assert called == [True]
