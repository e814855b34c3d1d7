"""Run a throwaway ACA-Py agent (``aca-py start``) on loopback, for tests and local dev.

Each :class:`LocalAgent` owns one ``aca-py`` subprocess in its own process group, with
``ACAPY_HOME`` set to a fresh temporary directory that holds a temp-file askar wallet
(``--wallet-test`` does not work in ACA-Py 1.7) and the agent's combined stdout/stderr log
(``agent.log``). No ledger is used. Start-up to ready takes ~1.5 s and ~140 MB per agent.

Usable from asyncio (``async with LocalAgent(...)``) and from synchronous pytest session
fixtures (``start_sync()`` / ``stop_sync()``). Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import IO, Any

from issuer.lib.processes import spawn_tied

log = logging.getLogger(__name__)

HOLDER_FLAGS = (
    "--auto-accept-invites",
    "--auto-accept-requests",
    "--auto-store-credential",
    "--auto-ping-connection",
)
STOP_GRACE_S = 15.0
POLL_INTERVAL_S = 0.1


def free_port() -> int:
    """Return a currently unused TCP port on 127.0.0.1 (racy by nature, fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalAgentSpec:
    """How to start one agent.

    Ports are TCP ports on 127.0.0.1; 0 means "pick a free one". ``webhook_url`` is the
    controller base URL (ACA-Py posts to ``{webhook_url}/topic/{topic}/``); a ``#KEY``
    suffix is sent as header ``x-api-key: KEY``. ``admin_api_key`` None means
    ``--admin-insecure-mode``. ``holder`` adds the auto-accept "wallet" flags;
    ``auto_respond_offer`` (holder only) adds ``--auto-respond-credential-offer`` — set it
    False for a holder that must be able to decline an offer.
    """

    label: str
    admin_port: int = 0
    inbound_port: int = 0
    webhook_url: str | None = None
    admin_api_key: str | None = None
    holder: bool = False
    auto_respond_offer: bool = True
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin_port = self.admin_port or free_port()
        self.inbound_port = self.inbound_port or free_port()

    def args(self) -> list[str]:
        """Arguments after ``aca-py start`` (wallet name/key are random per instance)."""
        inbound = f"http://127.0.0.1:{self.inbound_port}"
        args = [
            "--label", self.label,
            "-it", "http", "127.0.0.1", str(self.inbound_port),
            "-ot", "http", "-e", inbound,
            "--admin", "127.0.0.1", str(self.admin_port),
            "--no-ledger",
            "--wallet-type", "askar",
            "--wallet-name", f"w{secrets.token_hex(6)}",
            "--wallet-key-derivation-method", "kdf:argon2i:int",
            "--auto-provision", "--recreate-wallet",
        ]  # fmt: skip
        if not self.admin_api_key:
            args.append("--admin-insecure-mode")
        if self.holder:
            args += HOLDER_FLAGS
            if self.auto_respond_offer:
                args.append("--auto-respond-credential-offer")
        return args + list(self.extra_args)

    def secret_env(self) -> dict[str, str]:
        """The secrets, as ACA-Py's environment variables rather than arguments: a process's
        arguments are world-readable (``ps``), its environment only to its owner."""
        env = {"ACAPY_WALLET_KEY": secrets.token_urlsafe(24)}
        if self.admin_api_key:
            env["ACAPY_ADMIN_API_KEY"] = self.admin_api_key
        if self.webhook_url:  # its "#KEY" suffix is the webhook key
            env["ACAPY_WEBHOOK_URL"] = self.webhook_url
        return env


# Never inherited: ACA-Py reads them, and an inherited one would configure an agent.
SECRET_ENV = frozenset(
    {"ACAPY_WALLET_KEY", "ACAPY_ADMIN_API_KEY", "ACAPY_WEBHOOK_URL", "ACAPY_ADMIN_INSECURE_MODE"}
)


class LocalAgent:
    """One ``aca-py`` subprocess. ``binary`` is the path of the ``aca-py`` executable."""

    def __init__(self, spec: LocalAgentSpec, binary: str = "aca-py") -> None:
        self.spec = spec
        self.binary = binary
        self._home: str | None = None
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        """Admin API base URL, e.g. ``http://127.0.0.1:8031`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.spec.admin_port}"

    @property
    def log_path(self) -> str:
        """Path of the agent's stdout+stderr log (only valid while started)."""
        if self._home is None:
            raise RuntimeError("agent not started")
        return os.path.join(self._home, "agent.log")

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of the agent log ('' if unavailable)."""
        try:
            with open(self.log_path, "rb") as fh:
                return b"".join(fh.readlines()[-lines:]).decode(errors="replace")
        except (OSError, RuntimeError):
            return ""

    def _spawn(self) -> None:
        if self._proc is not None:
            raise RuntimeError("agent already started")
        self._home = tempfile.mkdtemp(prefix=f"acapy-{self.spec.label}-")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open for the process lifetime
        inherited = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        env = {**inherited, "ACAPY_HOME": self._home, **self.spec.secret_env()}
        # SIGTERM from the kernel if this process dies without stopping it.
        self._proc = spawn_tied(
            [self.binary, "start", *self.spec.args()],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip

    def _ready(self, deadline: float) -> bool:
        """One blocking probe; RuntimeError if the process died or past ``deadline`` (monotonic)."""
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise self._failure(f"exited with code {self._proc.returncode}")
        if time.monotonic() > deadline:
            raise self._failure("not ready before the start timeout")
        url = self.admin_url + "/status/ready"  # always http://127.0.0.1
        req = urllib.request.Request(url)  # noqa: S310
        if self.spec.admin_api_key:
            req.add_header("X-API-Key", self.spec.admin_api_key)
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _failure(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"ACA-Py agent {self.spec.label!r} {what} (admin {self.admin_url}); "
            f"log tail:\n{self.log_tail()}"
        )

    def _signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
        self._proc, self._log, self._home = None, None, None

    # -- sync API -------------------------------------------------------------------
    def start_sync(self, timeout: float = 30.0) -> None:
        """Launch and block until ``/status/ready`` is 200; RuntimeError on exit/timeout."""
        self._spawn()
        deadline = time.monotonic() + timeout
        try:
            while not self._ready(deadline):
                time.sleep(POLL_INTERVAL_S)
        except BaseException:
            self.stop_sync()
            raise
        log.info("ACA-Py %s ready at %s", self.spec.label, self.admin_url)

    def stop_sync(self) -> None:
        """SIGTERM the process group, SIGKILL after 15 s; remove the temp dir. Idempotent."""
        if self._proc is not None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._cleanup()

    # -- async API ------------------------------------------------------------------
    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Async :meth:`start_sync`: probes run in a worker thread, cancellation-safe."""
        self._spawn()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if await asyncio.to_thread(self._ready, deadline):
                    break
                await asyncio.sleep(POLL_INTERVAL_S)
        except BaseException:
            await self.stop()
            raise
        log.info("ACA-Py %s ready at %s", self.spec.label, self.admin_url)

    async def stop(self) -> None:
        """Async :meth:`stop_sync` (the blocking wait runs in a worker thread)."""
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> LocalAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
