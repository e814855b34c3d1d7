"""Prometheus metrics: request latency by route, open websockets, issuance transitions and
durations, login outcomes, the outbox's backlog and failures, the database pool, readiness.

With several hypercorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so every
worker's figures are summed (prometheus-client multiprocess mode). Nothing here costs a request
anything beyond a counter: what needs a query or a call (the outbox backlog, the agent) is read
when ``/metrics`` is scraped, at most once per :data:`SAMPLE_EVERY` seconds per worker, and each
worker writes its own pool figures every :data:`SAMPLE_EVERY` seconds (:func:`sample_pool_every`)
so that the multiprocess sum covers the workers that did not answer the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from quart import Blueprint, Quart, Response, current_app, request
from quart_schema import hide
from sqlalchemy.pool import QueuePool

from issuer.db import Database
from issuer.errors import Unauthenticated
from issuer.ops.routes import agent_ready, answers
from issuer.outbox import queries as outbox_queries
from issuer.web.context import services, settings

if TYPE_CHECKING:
    from issuer.services import Services

REQUESTS = Histogram(
    "issuer_http_request_duration_seconds",
    "HTTP request latency in seconds, by route and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WEBSOCKETS = Gauge(
    "issuer_open_websockets",
    "Open websockets, by kind (issuance: the portal's live status; pusher: the Pusher channels)",
    ["kind"],
    multiprocess_mode="livesum",
)
TRANSITIONS = Counter("issuer_issuance_transitions_total", "Issuance state changes", ["state"])
ISSUANCE_DURATION = Histogram(
    "issuer_issuance_duration_seconds",
    "Seconds from an issuance session's start to its final state, by that state",
    ["state"],
    # The offer may wait 300 s, an invitation 1800 s (ISSUER_OFFER/INVITATION_TIMEOUT).
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
LOGINS = Counter(
    "issuer_logins_total",
    "Sign-ins by outcome: success, mfa_required, bad_credentials, refused, unavailable, "
    "rate_limited",
    ["outcome"],
)
OUTBOX_ATTEMPT_FAILURES = Counter(
    "issuer_outbox_delivery_failures_total",
    "Outbox delivery attempts that failed (each retry counts), by kind and exception type",
    ["kind", "error"],
)
# Read from the database at scrape time by whichever worker answers: the most recent wins.
OUTBOX_MESSAGES = Gauge(
    "issuer_outbox_messages",
    "Outbox messages not delivered, by kind and status (pending: to deliver; failed: given up)",
    ["kind", "status"],
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST = Gauge(
    "issuer_outbox_oldest_pending_age_seconds",
    "Age of the oldest pending outbox message in seconds, by kind (0 when none is pending)",
    ["kind"],
    multiprocess_mode="mostrecent",
)
READY = Gauge(
    "issuer_ready",
    "1 when the component answered at the last scrape (database, agent), else 0",
    ["component"],
    multiprocess_mode="mostrecent",
)
# Each worker's own pool, summed over the live workers.
POOL_SIZE = Gauge(
    "issuer_db_pool_size", "Connections the database pool keeps", multiprocess_mode="livesum"
)
POOL_CHECKED_OUT = Gauge(
    "issuer_db_pool_checked_out", "Database connections in use", multiprocess_mode="livesum"
)
POOL_OVERFLOW = Gauge(
    "issuer_db_pool_overflow",
    "Database connections open beyond the pool size",
    multiprocess_mode="livesum",
)
OUTBOX_KINDS = ("email", "event")
SAMPLE_EVERY = 5.0  # seconds
SAMPLER = "issuer.metrics.sampler"  # app.extensions key of the app's ScrapeSampler
log = logging.getLogger(__name__)

blueprint = Blueprint("metrics", __name__)


def register_metrics(app: Quart) -> None:
    """``GET /metrics``. Each answer's latency is observed by ``issuer.web.observe``."""
    app.register_blueprint(blueprint)


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    """Prometheus exposition; needs ``Authorization: Bearer $ISSUER_METRICS_TOKEN`` if set."""
    token = settings().metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthenticated("A valid metrics token is required.")
    found = services()
    sample_pool(found.db)
    await sampler(current_app).refresh(found)
    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = generate_latest(registry) if registry else generate_latest()
    return Response(body, content_type=CONTENT_TYPE_LATEST)


# --- figures read at scrape time ---------------------------------------------------------------


def sample_pool(db: Database) -> None:
    """Write this worker's pool figures (SQLAlchemy's ``QueuePool``; other pools have none).
    No I/O: it reads the pool's counters."""
    pool = db.engine.pool
    if isinstance(pool, QueuePool):
        POOL_SIZE.set(pool.size())
        POOL_CHECKED_OUT.set(pool.checkedout())
        POOL_OVERFLOW.set(max(pool.overflow(), 0))  # negative while fewer than size are open


async def sample_pool_every(
    db: Database, stopping: asyncio.Event, interval: float = SAMPLE_EVERY
) -> None:
    """Supervised loop: :func:`sample_pool` every ``interval`` seconds until ``stopping``, so
    that in multiprocess mode the workers a scrape does not reach are summed too."""
    while not stopping.is_set():
        sample_pool(db)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)


def sampler(app: Quart) -> ScrapeSampler:
    """The app's :class:`ScrapeSampler` (made on first use)."""
    if SAMPLER not in app.extensions:
        app.extensions[SAMPLER] = ScrapeSampler()
    found: ScrapeSampler = app.extensions[SAMPLER]
    return found


class ScrapeSampler:
    """Reads what costs a query or a call — the outbox backlog (one grouped query, which also
    says whether the database answers) and the agent's readiness — at most once per ``every``
    seconds, however often ``/metrics`` is fetched; concurrent scrapes share one reading.

    A failed or slow (``issuer.ops.routes.READY_TIMEOUT``) reading sets ``issuer_ready`` to 0
    and leaves the outbox figures as last read.
    """

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self._lock = asyncio.Lock()
        self._last: float | None = None

    async def refresh(self, found: Services) -> None:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last < self.every:
                return
            database, agent = await asyncio.gather(
                answers(read_backlog(found.db, found.clock.now())),
                answers(agent_ready(found.agent)),
            )
            READY.labels("database").set(float(database))
            READY.labels("agent").set(float(agent))
            self._last = time.monotonic()


async def read_backlog(db: Database, now: datetime) -> bool:
    """Set ``issuer_outbox_messages`` and ``issuer_outbox_oldest_pending_age_seconds`` from the
    outbox table; ``True`` once read."""
    async with db.session() as session:
        rows = await outbox_queries.backlog(session)
    counts = {(kind, status): 0 for kind in OUTBOX_KINDS for status in ("pending", "failed")}
    oldest = dict.fromkeys(OUTBOX_KINDS, 0.0)
    for kind, failed, count, first in rows:
        counts[(kind, "failed" if failed else "pending")] = count
        if not failed and first is not None:
            oldest[kind] = max((now - first).total_seconds(), 0.0)
    for (kind, status), count in counts.items():
        OUTBOX_MESSAGES.labels(kind, status).set(count)
    for kind, age in oldest.items():
        OUTBOX_OLDEST.labels(kind).set(age)
    return True
