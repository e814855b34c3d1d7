"""Real HTTP servers for integration tests: hypercorn in this event loop, or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

ROOT = Path(__file__).resolve().parents[2]
# Hypercorn keeps a closed websocket's ping task alive for up to ``websocket_ping_interval``
# (20 s), and shutdown waits ``graceful_timeout`` (10 s) for it: tests that used websockets stop
# their servers faster with this.
SHORT_GRACE = ("--graceful-timeout", "2")


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """Every living process: ``(pid, comm, the fields of its stat after comm)`` (Linux
    ``/proc``; ``comm`` may hold spaces and parentheses, so it is cut at the last ``)``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, rest = stat.rpartition(")")
        yield int(entry.name), head.split("(", 1)[1], rest.split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants, parents first (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for child, _comm, fields in processes():
        children.setdefault(int(fields[1]), []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


class InProcessServer:
    """Serve ``app`` with hypercorn on ``127.0.0.1:port`` inside the running event loop.

    Startup runs the app's ``before_serving`` (lifespan), exactly as in production.
    """

    def __init__(self, app: Quart, port: int) -> None:
        self.app = app
        self.port = port
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> InProcessServer:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.graceful_timeout = 1
        config.accesslog = None
        self._task = asyncio.create_task(
            serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._task.done():
                self._task.result()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return self
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"server on port {self.port} did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 15)

    async def __aenter__(self) -> InProcessServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class ServerProcess:
    """``hypercorn 'issuer:create_app()'`` as its own process, configured through ``env``."""

    def __init__(
        self,
        port: int,
        env: dict[str, str],
        log_path: Path,
        workers: int = 1,
        args: tuple[str, ...] = (),
    ) -> None:
        """``args``: extra hypercorn options, after ``--config hypercorn.toml``."""
        self.port = port
        self.env = env
        self.log_path = log_path
        self.workers = workers
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """What runs: hypercorn with the repository's ``hypercorn.toml``."""
        hypercorn = str(Path(sys.executable).parent / "hypercorn")
        return [
            hypercorn, "--config", str(ROOT / "hypercorn.toml"),
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
            *self.args, "issuer:create_app()",
        ]  # fmt: skip

    def ready(self) -> bool:
        """Besides ``GET /health`` answering 200, whether the server counts as started."""
        return True

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = self.command()
        env = {**os.environ, "PORT": str(self.port), **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200 and self.ready():
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def started_at(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop_gracefully(server: ServerProcess, timeout: float = 20.0) -> None:
    """Stop ``server`` the way ``docker stop`` does, then kill whatever of it is left.

    SIGTERM to hypercorn's main process only: it tells its workers to shut down, so the app's
    ``after_serving`` runs (a worker signalled directly dies on the spot). Children that live in
    their own sessions (the local ACA-Py agents) and outlive it are killed by pid.
    """
    if server.proc is None:
        return
    children = [(pid, started_at(pid)) for pid in process_tree(server.proc.pid)[1:]]
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout)
    server.stop()
    for pid, start in children:
        if start is not None and started_at(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
