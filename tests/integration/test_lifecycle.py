"""``make run`` leaves no process behind, however it is stopped: the two local ACA-Py agents die
with the app within the graceful timeout (10 s), and their keys are not in ``ps``.

Each case starts ``make run`` as its own process group (make → hypercorn master → worker →
two agents), waits until the agents answer, sends one signal the way an operator, a terminal,
systemd, supervisor or the kernel would, and watches ``/proc``. Survivors are killed by pid
afterwards, so a failure cannot leak into other tests.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from issuer.issuance.agents.local import free_port
from tests.conftest import ROOT, migrate
from tests.support.acapy import acapy_binary

pytestmark = pytest.mark.acapy
GRACE = 10.0  # hypercorn.toml's graceful_timeout
START_TIMEOUT = 90.0


def stat(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name: state, ppid, pgid, …"""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    fields = stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Run:
    make: subprocess.Popen[bytes]
    log: Path
    master: int = 0
    worker: int = 0
    agents: list[int] = field(default_factory=list)

    def find(self) -> bool:
        for pid in descendants(self.make.pid):
            argv = " ".join(cmdline(pid))
            if "hypercorn" in argv and "--config" in argv:
                self.master = pid
            elif "multiprocessing.spawn" in argv:
                self.worker = pid
        if self.worker:
            self.agents = [p for p in descendants(self.worker) if "aca-py" in " ".join(cmdline(p))]
        served = b"Running on http" in self.log.read_bytes()
        return served and len(self.agents) == 2

    def admin_ports(self) -> list[int]:
        ports = []
        for pid in self.agents:
            argv = cmdline(pid)
            ports.append(int(argv[argv.index("--admin") + 2]))
        return ports


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Run]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'issuer.db'}"
    migrate(url)
    env = {
        **os.environ,
        "ISSUER_ENV": "development",
        "ISSUER_DATABASE_URL": url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_ACAPY_BIN": acapy_binary(),
        # Empty = unset, whatever a local .env says: no agent configured, so the local ones run.
        "ISSUER_ACAPY_ADMIN_URL": "",
        "ISSUER_REST_ISSUER_URL": "",
        "ISSUER_TEST_WALLET_ADMIN_URL": "",
        "ISSUER_WEBHOOK_API_KEY": "",
    }
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={free_port()}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # A terminal's Ctrl-C reaches make with SIGINT's default action, not ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    run = Run(make, log)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not run.find():
            assert make.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        yield run
    finally:
        for pid in [run.master, run.worker, *run.agents]:
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        make.wait(10)


CASES = {
    # name: (who gets the signal, the signal)
    "SIGTERM to make (docker stop, kill PID)": ("make", signal.SIGTERM),
    "Ctrl-C in the terminal (SIGINT to the group)": ("group", signal.SIGINT),
    "SIGTERM to the process group (systemd, supervisor stopasgroup)": ("group", signal.SIGTERM),
    "SIGHUP to the group (the terminal closed)": ("group", signal.SIGHUP),
    "SIGTERM to the hypercorn master": ("master", signal.SIGTERM),
    "SIGTERM to the worker alone": ("worker", signal.SIGTERM),
    "SIGKILL of the worker": ("worker", signal.SIGKILL),
    "SIGKILL of the master": ("master", signal.SIGKILL),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_agents_die_with_the_app(make_run: Run, case: str) -> None:
    who, signum = CASES[case]
    agents, ports = list(make_run.agents), make_run.admin_ports()
    assert all(listening(port) for port in ports)
    if who == "group":
        os.killpg(make_run.make.pid, signum)
    else:
        os.kill({"make": make_run.make.pid, "master": make_run.master,
                 "worker": make_run.worker}[who], signum)  # fmt: skip
    signalled = time.monotonic()
    while [p for p in agents if alive(p)] and time.monotonic() - signalled < GRACE + 2:
        time.sleep(0.02)
    took = time.monotonic() - signalled
    left = [p for p in agents if alive(p)]
    assert left == [] and took <= GRACE, (case, left, round(took, 2), make_run.log.read_text())
    assert not [port for port in ports if listening(port)]


def test_the_agents_keys_are_not_in_ps(make_run: Run) -> None:
    for pid in make_run.agents:
        argv = cmdline(pid)
        assert any(a.endswith("aca-py") for a in argv), argv
        for flag in ("--wallet-key", "--admin-api-key", "--webhook-url"):
            assert not [a for a in argv if a == flag or a.startswith(f"{flag}=")], argv
        assert not [a for a in argv if re.search(r"#\S", a)], argv  # the webhook key follows '#'
