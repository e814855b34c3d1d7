"""Health and metrics for operators: liveness, readiness (database and agent), Prometheus."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import document_response, validate_response
from sqlalchemy import text

from issuer.web.context import services

blueprint = Blueprint("ops", __name__)
READY_TIMEOUT = 2.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    agent: str


@blueprint.get("/health")
@validate_response(Health)
async def health() -> Health:
    """Liveness: the process answers. Checks nothing else, by design."""
    return Health(status="ok")


async def _database_ok() -> bool:
    async with services().db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True


async def _agent_ok() -> bool:
    agent = services().agent
    return agent is not None and await agent.ready()


async def _check(probe: Any) -> str:
    try:
        return "ok" if await asyncio.wait_for(probe(), READY_TIMEOUT) else "down"
    except Exception:
        return "down"


@blueprint.get("/health/ready")
@validate_response(Readiness, 200)
@document_response(Readiness, 503)
async def ready() -> tuple[Readiness, int]:
    """Readiness: the database and the credential agent both answer (503 when either is down)."""
    database, agent = await asyncio.gather(_check(_database_ok), _check(_agent_ok))
    up = database == "ok" and agent == "ok"
    return Readiness(status="ok" if up else "unavailable", database=database, agent=agent), (
        200 if up else 503
    )
