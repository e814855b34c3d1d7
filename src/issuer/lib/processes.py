"""Helper subprocesses that cannot outlive us (Linux): the local ACA-Py agents.

The child gets ``PR_SET_PDEATHSIG(SIGTERM)`` before it execs, so the kernel signals it when the
process that started it dies for any reason (SIGKILL, OOM, a crash), not only on a clean stop.
A tiny exec stub sets it (no code of ours runs between fork and exec, unlike ``preexec_fn``,
which is unsafe with threads). The signal is tied to the *thread* that forked the child, so
every spawn goes through one long-lived thread, whatever thread asks for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# argv: <stub> <expected parent pid> <program> <args...>; PR_SET_PDEATHSIG is option 1.
_STUB = (
    "import ctypes,os,signal,sys\n"
    "if ctypes.CDLL(None,use_errno=True).prctl(1,signal.SIGTERM):sys.exit('prctl failed')\n"
    "if os.getppid()!=int(sys.argv[1]):os.kill(os.getpid(),signal.SIGTERM)\n"
    "os.execvp(sys.argv[2],sys.argv[2:])\n"
)
_spawner: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def tied_argv(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the program gets SIGTERM when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _STUB, str(os.getpid()), *argv]


def spawn_tied(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen)`` whose process dies with this one."""
    global _spawner
    with _lock:
        if _spawner is None:  # an idle executor thread lives until the interpreter exits
            _spawner = ThreadPoolExecutor(1, thread_name_prefix="spawn-tied")

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(tied_argv(argv), **popen)  # noqa: S603 - the caller's argv

    return _spawner.submit(spawn).result()
