"""Logging: one line per event, tagged with the request id (never secrets or tokens).

``ISSUER_LOG_FORMAT=text`` (the default) writes ``time level logger [request id] message``;
``json`` writes one JSON object per line (python-json-logger) with ``timestamp`` (ISO 8601,
UTC), ``level``, ``logger``, ``message``, ``request_id``, ``pid`` and whatever the event adds:
the access log (``issuer.access``, written by ``issuer.web.observe``) adds ``method``,
``route`` (the pattern, never the path), ``status`` and ``duration_ms``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonLines(JsonFormatter):
    """One JSON object per record, with the fields named in this module's docstring."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        created = datetime.fromtimestamp(record.created, UTC)
        log_data["timestamp"] = created.isoformat(timespec="milliseconds")


TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Libraries that log request URLs at INFO, query strings included (a provider's access token,
# an app secret in Facebook's debug_token): only their warnings are kept.
QUIET_LIBRARIES = ("httpx", "httpcore")


def formatter(kind: Literal["text", "json"]) -> logging.Formatter:
    return JsonLines() if kind == "json" else logging.Formatter(TEXT)


def configure_logging(level: str, kind: Literal["text", "json"] = "text") -> None:
    """Root logging to stderr in ``kind``'s format, once per process (a later call, from an
    app built again in the same process, updates the level and the format)."""
    # What a log record would otherwise look up on every call and nothing here prints: the
    # caller's file and line (a walk up the stack), the thread's and the process's names
    # (Python's logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    ours: list[logging.Handler] = [
        h for h in root.handlers if any(isinstance(f, RequestIdFilter) for f in h.filters)
    ]
    if not ours:
        stream = logging.StreamHandler(sys.stderr)
        stream.addFilter(RequestIdFilter())
        root.addHandler(stream)
        ours = [stream]
    for handler in ours:
        handler.setFormatter(formatter(kind))
    root.setLevel(level.upper())
