"""Health and metrics for operators: liveness with the running build, readiness (database and
agent), and the ``issuer_build_info`` metric."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Quart, current_app
from quart_schema import document_response, validate_response
from sqlalchemy import text

from issuer.release import Release
from issuer.web.context import services

if TYPE_CHECKING:
    from issuer.issuance.agents.base import Agent

blueprint = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
READY_TIMEOUT = 2.0
# app.extensions key of the one Health answer, built by register_release().
HEALTH = "issuer.health"
# Always 1; the labels say which build runs. "max" keeps one series per label set across
# hypercorn workers in multiprocess mode (each worker writes 1), and is plain in one process.
BUILD_INFO = Gauge(
    "issuer_build_info",
    "The running build: its version and git revision (always 1)",
    ["version", "revision"],
    multiprocess_mode="max",
)


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    version: str
    revision: str


class Readiness(BaseModel):
    status: str
    database: str
    agent: str


@blueprint.get("/health")
@validate_response(Health)
async def health() -> Health:
    """Liveness: the process answers, with its version and git revision.

    Checks nothing else, by design."""
    found: Health = current_app.extensions[HEALTH]
    return found


def register_release(app: Quart, release: Release) -> None:
    """Build ``GET /health``'s answer once (a hot path) and set ``issuer_build_info``.

    The gauge is process-wide: the label set of an app built earlier in this process (tests)
    is cleared first, so the metric names one build.
    """
    app.extensions[HEALTH] = Health(status="ok", version=release.version, revision=release.revision)
    BUILD_INFO.clear()
    BUILD_INFO.labels(release.version, release.revision).set(1)


async def _database_ok() -> bool:
    async with services().db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True


async def agent_ready(agent: Agent | None) -> bool:
    return agent is not None and await agent.ready()


async def answers(check: Awaitable[bool]) -> bool:
    """Whether ``check`` answers ``True`` within :data:`READY_TIMEOUT` seconds (an error: it
    does not). Readiness and the ``issuer_ready`` metric ask the same way."""
    try:
        return bool(await asyncio.wait_for(check, READY_TIMEOUT))
    except Exception as exc:  # down, refused, timed out
        log.debug("readiness check failed: %r", exc)
        return False


@blueprint.get("/health/ready")
@validate_response(Readiness, 200)
@document_response(Readiness, 503)
async def ready() -> tuple[Readiness, int]:
    """Readiness: the database and the credential agent both answer (503 when either is down)."""
    found = await asyncio.gather(answers(_database_ok()), answers(agent_ready(services().agent)))
    database, agent = ("ok" if up else "down" for up in found)
    up = all(found)
    return Readiness(status="ok" if up else "unavailable", database=database, agent=agent), (
        200 if up else 503
    )
