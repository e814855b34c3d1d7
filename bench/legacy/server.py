"""A legacy app under gunicorn, as its own process group on a free loopback port.

``GunicornServer("bench.legacy.accounts:app", env)`` is one sync worker (001's
``gunicorn -b 0.0.0.0:$PORT app:app``); ``worker_class="gthread", workers=2, threads=4`` is 000's
``gunicorn.conf.py``. gunicorn's other defaults apply (backlog 2048, keep-alive 2 s, no access
log). Logs go to ``bench/results/logs/NAME.log``; ``stop()`` ends the group it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.servers import process_tree

from bench.common import ROOT, cpu_seconds, free_port, log_dir


class GunicornServer:
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
        self.name = name
        self.app = app
        self.env = env
        self.worker_class = worker_class
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.log_path = log_dir() / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GunicornServer:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        command = [
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
        env = {**os.environ, **self.env, "NO_PROXY": "127.0.0.1,localhost"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200 and len(self.pids) > self.workers:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text()[-3000:]}")

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

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
