"""The supervisor's bookkeeping of its tasks by name (``issuer.supervisor``)."""

from __future__ import annotations

import asyncio

from issuer.supervisor import Loop, Supervisor


async def test_a_name_whose_task_has_just_returned_runs_again() -> None:
    """A poller that has just returned (no listeners) while a new page asks for it: asyncio
    forgets the finished task one loop step later, and the new one must start all the same —
    and stay known once the old one is forgotten."""
    supervisor = Supervisor()
    release = asyncio.Event()

    async def successor(_stopping: asyncio.Event) -> None:
        await release.wait()

    async def first(_stopping: asyncio.Event) -> None:
        # Runs before the finished task's done-callbacks: the window in question.
        asyncio.get_running_loop().call_soon(supervisor.run, "poll:s", successor)

    supervisor.run("poll:s", first)
    finished = supervisor.task("poll:s")
    assert finished is not None
    await asyncio.wait([finished])
    running = supervisor.task("poll:s")
    assert running is not None and running is not finished and not running.done()
    release.set()
    await running
    assert "poll:s" not in supervisor and supervisor.task("poll:s") is None


async def test_a_running_name_is_left_alone() -> None:
    supervisor = Supervisor()
    release = asyncio.Event()
    started: list[str] = []

    def job(label: str) -> Loop:
        async def loop(_stopping: asyncio.Event) -> None:
            started.append(label)
            await release.wait()

        return loop

    supervisor.run("sweeper", job("one"))
    supervisor.run("sweeper", job("two"))
    await asyncio.sleep(0)
    assert started == ["one"]
    release.set()
    await supervisor.stop()
    assert "sweeper" not in supervisor
