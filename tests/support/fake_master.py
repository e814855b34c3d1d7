"""A stand-in for hypercorn's master in a process of its own (spawned: keep this module's
imports light): it counts the SIGTERMs it receives and, as hypercorn's ``run.shutdown`` does,
sets the workers' shutdown event in its signal handler."""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any


def fake_master(shutdown_event: Event, conn: Connection) -> None:
    """Answer ``"count"`` with the SIGTERMs received so far; return on ``"exit"``."""
    received = 0

    def on_sigterm(*_: Any) -> None:
        nonlocal received
        received += 1
        shutdown_event.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    conn.send("ready")
    while True:
        if conn.poll(0.05):
            message = conn.recv()
            if message == "exit":
                return
            conn.send(received)
