"""``python -m issuer.serve ARGS``: hypercorn's command line (the same ``ARGS`` as ``hypercorn``)
with one fix to its master process, version-checked like the adapters in
:mod:`issuer.web.server`.

hypercorn 0.18's master (``run.py`` ``run``) handles SIGINT, SIGTERM and SIGHUP with Python
signal handlers that call ``shutdown_event.set()`` (or join the workers), and
``multiprocessing.Event.set`` takes a lock that is not reentrant. Python runs a handler between
two bytecodes of whatever the main thread does, the previous handler included, so a second
signal arriving while the first handler holds that lock deadlocks the master for good: the
workers never hear of the shutdown, and the process is SIGKILLed at the end of its grace period
with its websockets and its agents cut. Two signals in a row are common: ``make`` passes SIGTERM
on to its child after the process group got it, systemd signals every process of the unit, an
operator presses Ctrl-C twice. Here the master's handlers run one at a time: a signal that
arrives while one runs is handled right after it, not inside it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import hypercorn.run
from hypercorn.__main__ import main as hypercorn_main

from issuer.lib.versions import require_tested

TESTED = {"hypercorn": ("0.18.",)}
Handler = Callable[[int, FrameType | None], Any]


class SerialHandlers:
    """Wraps signal handlers so that they never run inside one another: a signal that arrives
    while a wrapped handler runs is queued and handled once that handler has returned."""

    def __init__(self) -> None:
        self.running = False
        self.queued: list[tuple[Handler, int, FrameType | None]] = []

    def wrap(self, handler: Any) -> Any:
        """``handler`` made serial; ``SIG_IGN``, ``SIG_DFL`` and ``None`` pass unchanged."""
        if not callable(handler):
            return handler

        def serial(signum: int, frame: FrameType | None) -> None:
            self.queued.append((handler, signum, frame))
            if self.running:
                return  # the handler running now will call it once it is done
            self.running = True
            try:
                while self.queued:
                    queued, number, at = self.queued.pop(0)
                    queued(number, at)
            finally:
                self.running = False

        return serial


class _SignalModule:
    """What ``hypercorn.run`` sees as ``signal``: the module, with ``signal()`` serialising
    every handler it installs."""

    def __init__(self, handlers: SerialHandlers) -> None:
        self._handlers = handlers

    def __getattr__(self, name: str) -> Any:
        return getattr(signal, name)

    def signal(self, signum: int, handler: Any) -> Any:
        return signal.signal(signum, self._handlers.wrap(handler))


def install() -> None:
    """Make the master's signal handlers serial (refuses an untested hypercorn)."""
    require_tested(TESTED, "issuer/serve.py")
    setattr(hypercorn.run, "signal", _SignalModule(SerialHandlers()))  # noqa: B010


def main(argv: list[str] | None = None) -> int:
    install()
    return hypercorn_main(argv)


if __name__ == "__main__":
    sys.exit(main())
