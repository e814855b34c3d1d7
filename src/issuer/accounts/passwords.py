"""Password hashing off the event loop: argon2id verifies (~17 ms of CPU each) run in a small
pool of lower-priority threads, so a login storm cannot starve the loop (ASVS 11.4.2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from issuer.lib.passwords import PasswordHashing, UnsafeHash, Verification

log = logging.getLogger("issuer.audit")
# How much lower the hashing threads run (nice increment). With as many hashing threads as cores
# at the loop's priority, a login storm takes the event loop's CPU and every other request waits
# (the loop shares its process's scheduling group with them). Lower, they still get all the CPU
# the loop leaves; login throughput is unchanged.
HASH_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    """Thread-pool initializer: lower this thread's priority (on Linux, nice is per thread)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # not allowed here: hash at the normal priority
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASH_THREAD_NICENESS))


class Passwords:
    def __init__(self, hashing: PasswordHashing, threads: int) -> None:
        self.hashing = hashing
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lower_thread_priority
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.hashing.hash, password)

    async def verify(self, stored: str | None, password: str) -> Verification:
        """Check ``password``; with no stored hash, a dummy one is verified so both cases cost
        the same (ASVS 6.3.8). An unsafe stored hash never verifies."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, self.hashing.verify, stored or self.hashing.dummy_hash, password
            )
        except UnsafeHash as exc:
            log.warning("refused to verify an unsafe stored hash: %s", exc)
            return Verification(False)
