"""Prometheus metrics: request latency by route, open websockets, issuance transitions.

With several hypercorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so every
worker's figures are summed (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import hmac
import logging
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from quart import Blueprint, Quart, Response, g, request
from quart_schema import hide

from issuer.errors import Unauthenticated
from issuer.web.context import settings

REQUESTS = Histogram(
    "issuer_http_request_duration_seconds",
    "HTTP request latency in seconds, by route and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WEBSOCKETS = Gauge(
    "issuer_open_websockets", "Open issuance websockets", multiprocess_mode="livesum"
)
TRANSITIONS = Counter("issuer_issuance_transitions_total", "Issuance state changes", ["state"])

blueprint = Blueprint("metrics", __name__)
ACCESS = logging.getLogger("issuer.access")


def register_metrics(app: Quart) -> None:
    @app.before_request
    async def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    async def observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            elapsed = time.perf_counter() - started
            route = request.url_rule.rule if request.url_rule else "<unmatched>"
            REQUESTS.labels(request.method, route, str(response.status_code)).observe(elapsed)
            # The access log names the route pattern, not the path: paths such as
            # /reset_password/<token>/<uidb64> carry secrets (ASVS 16.3.1).
            ACCESS.info(
                "%s %s %s %.1fms",
                request.method, route, response.status_code, elapsed * 1000,
            )  # fmt: skip
        return response

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
    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = generate_latest(registry) if registry else generate_latest()
    return Response(body, content_type=CONTENT_TYPE_LATEST)
