"""A legacy app under gunicorn, as its own process group on a free loopback port.

``GunicornServer("bench.legacy.accounts:app", env)`` is one sync worker (001's
``gunicorn -b 0.0.0.0:$PORT app:app``); ``worker_class="gthread", workers=2, threads=4`` is 000's
``gunicorn.conf.py``. gunicorn's other defaults apply (backlog 2048, keep-alive 2 s, no access
log). Logs go to ``bench/results/logs/NAME.log``; ``stop()`` ends the group it started.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.servers import ServerProcess, process_tree

from bench.common import cpu_seconds, free_port, log_dir


class GunicornServer(ServerProcess):
    def __init__(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        *,
        worker_class: str = "sync",
        workers: int = 1,
        threads: int = 1,
    ) -> None:
        log_path = log_dir() / f"{name}.log"
        log_path.write_text("")
        super().__init__(free_port(), {**env, "NO_PROXY": "127.0.0.1,localhost"}, log_path, workers)
        self.name = name
        self.app = app
        self.worker_class = worker_class
        self.threads = threads

    def command(self) -> list[str]:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        return [
            gunicorn,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--threads",
            str(self.threads),
            # gunicorn 27's control socket has one default path: two servers would share it.
            "--graceful-timeout",
            "2",
            "--no-control-socket",
            self.app,
        ]

    def ready(self) -> bool:
        return len(self.pids) > self.workers  # the master and every worker

    def start(self, timeout: float = 30.0) -> GunicornServer:
        super().start(timeout)
        return self

    @property
    def pids(self) -> list[int]:
        """The master and its workers."""
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def cpu_seconds(self) -> float:
        """CPU time the master and its workers have used so far (user + system, seconds)."""
        total = 0.0
        for pid in self.pids:
            try:
                total += cpu_seconds(pid)
            except (OSError, IndexError):
                continue
        return total
