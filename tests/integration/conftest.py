"""Integration fixtures: the real ACA-Py agents, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.acapy import Agents, start_agents


@pytest.fixture(scope="session")
def agents() -> Iterator[Agents]:
    """An issuer (webhooks to ``agents.webhook_port``), a holder and a declining holder."""
    started = start_agents()
    yield started
    started.stop()
