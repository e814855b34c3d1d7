"""``python -m issuer.serve``: hypercorn's master runs its signal handlers one at a time.

With real signals to this process: a handler that is interrupted by a second signal finishes
before the second is handled (hypercorn's own handler would deadlock on
``multiprocessing.Event``'s lock there). ``tests/integration/test_lifecycle.py`` stops
``make run`` (which serves through ``issuer.serve``) every way an operator would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import FrameType

import hypercorn.run
import pytest

from issuer import serve


@pytest.fixture
def sigusr1() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def resignalling(steps: list[str]) -> Callable[[int, FrameType | None], None]:
    """A SIGUSR1 handler that, the first time, sends SIGUSR1 again in its middle (Python runs
    the next handler at the next bytecode), noting its steps."""

    def handler(signum: int, frame: FrameType | None) -> None:
        steps.append("enter")
        if len(steps) == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
            steps.append("signalled again")
        steps.append("leave")

    return handler


def test_a_signal_during_a_handler_is_handled_after_it(sigusr1: None) -> None:
    steps: list[str] = []
    signal.signal(signal.SIGUSR1, serve.SerialHandlers().wrap(resignalling(steps)))
    os.kill(os.getpid(), signal.SIGUSR1)
    assert steps == ["enter", "signalled again", "leave", "enter", "leave"]


def test_without_the_wrapper_the_handler_would_run_inside_itself(sigusr1: None) -> None:
    """What the test above guards against (so that it can fail)."""
    steps: list[str] = []
    signal.signal(signal.SIGUSR1, resignalling(steps))
    os.kill(os.getpid(), signal.SIGUSR1)
    assert steps == ["enter", "enter", "leave", "signalled again", "leave"]


def test_install_makes_the_masters_handlers_serial(
    sigusr1: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hypercorn.run, "signal", signal)  # restored afterwards
    serve.install()
    seen = hypercorn.run.signal  # what hypercorn's run() calls
    assert seen.SIGTERM == signal.SIGTERM and seen.SIG_IGN == signal.SIG_IGN

    def handler(signum: int, frame: FrameType | None) -> None:
        pass

    seen.signal(signal.SIGUSR1, handler)
    installed = signal.getsignal(signal.SIGUSR1)
    assert callable(installed) and installed is not handler
    seen.signal(signal.SIGUSR1, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN


def test_the_master_does_not_import_the_app() -> None:
    """The master only spawns workers; each worker builds the app (``issuer:create_app()``)."""
    heavy = "{'quart', 'sqlalchemy', 'issuer.app'}"
    probe = f"import sys, issuer.serve; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
