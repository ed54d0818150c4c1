"""Structured logging: one JSON object per line on stdout, in the shape Cloud Logging reads.

python-json-logger formats each record: `severity`, `message`, `logger`, `time`, the record's `extra`
fields and its exception. The request being served (`bind_request`, a context variable) adds its
`request_id` and, when the request carried `traceparent` or `X-Cloud-Trace-Context`, the trace
fields Cloud Logging groups a request's lines by (`logging.googleapis.com/trace` as
`projects/P/traces/T`, `spanId`, `trace_sampled`). uvicorn's and the functions framework's own
loggers go through the same handler, so no plain-text line (`ERROR:    boom`) is left.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pythonjsonlogger.orjson import OrjsonFormatter

TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
TRACE_SAMPLED = "logging.googleapis.com/trace_sampled"

SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "werkzeug", "gunicorn.error", "gunicorn.access")
"""Loggers of the servers the services run in, sent through the JSON handler instead of their own.

Only those with handlers of their own are rerouted: uvicorn's `--no-access-log` leaves `uvicorn.access`
without handlers and not propagating, and uvicorn writes no access line only while it stays so
(it checks `hasHandlers()`): an access line per request would cost predict ~40 % of its throughput."""

_CLOUD_TRACE = re.compile(r"\A([0-9a-f]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?\Z")
_TRACEPARENT = re.compile(r"\A[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
_ZERO_TRACE = "0" * 32


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The trace a request belongs to: a 32-hex trace id, its 16-hex span id, and whether it is sampled."""

    trace_id: str
    span_id: str | None
    sampled: bool


def parse_cloud_trace(value: str) -> TraceContext | None:
    """`X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS` (span id decimal); None if malformed."""
    match = _CLOUD_TRACE.match(value.lower())
    if match is None or match.group(1) == _ZERO_TRACE:
        return None
    trace_id, span, options = match.groups()
    span_id = f"{int(span):016x}" if span is not None and 0 < int(span) < 1 << 64 else None
    return TraceContext(trace_id, span_id, options == "1")


def parse_traceparent(value: str) -> TraceContext | None:
    """W3C `traceparent: 00-TRACE_ID-PARENT_ID-FLAGS`; None if malformed or all-zero."""
    match = _TRACEPARENT.match(value.lower())
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == "0" * 16:
        return None
    trace_id, span_id, flags = match.groups()
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


class RequestContext(NamedTuple):
    """What the log lines written while serving one request carry: its id, and its trace headers as
    received, parsed only when a line is written (a request that logs nothing pays nothing for them)."""

    request_id: str
    traceparent: bytes | None = None
    cloud_trace: bytes | None = None

    def trace(self) -> TraceContext | None:
        """The request's trace: `traceparent` if valid, else `X-Cloud-Trace-Context` if valid."""
        if self.traceparent is not None and (parent := parse_traceparent(self.traceparent.decode("latin-1"))):
            return parent
        return parse_cloud_trace(self.cloud_trace.decode("latin-1")) if self.cloud_trace is not None else None


_request: ContextVar[RequestContext | None] = ContextVar("churnflow_request", default=None)


def bind_request(context: RequestContext) -> Token[RequestContext | None]:
    """Attach `context` to the log lines of the current task until `unbind_request`."""
    return _request.set(context)


def unbind_request(token: Token[RequestContext | None]) -> None:
    """Undo `bind_request`."""
    _request.reset(token)


_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class CloudJsonFormatter(OrjsonFormatter):
    """python-json-logger's formatter with Cloud Logging's field names and the request's trace fields."""

    def __init__(self, project: str | None = None):
        super().__init__(["message", "name"], rename_fields={"name": "logger"}, exc_info_as_array=False)
        self.project = project

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        """`severity` first, then the message, logger, time, the extra fields, the request's context."""
        log_data["severity"] = _SEVERITY.get(record.levelno, "DEFAULT")
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        if "exc_info" in log_data:
            log_data["exception"] = log_data.pop("exc_info")
        context = _request.get()
        if context is None:
            return
        log_data.setdefault("request_id", context.request_id)
        trace = context.trace()
        if trace is not None:
            log_data[TRACE] = f"projects/{self.project}/traces/{trace.trace_id}" if self.project else trace.trace_id
            if trace.span_id is not None:
                log_data[SPAN_ID] = trace.span_id
            log_data[TRACE_SAMPLED] = trace.sampled


def configure_logging(level: str = "INFO", project: str | None = None) -> None:
    """Send the root logger's and the servers' records to stdout as JSON lines (once per entry point).

    `project` names the Google Cloud project in `logging.googleapis.com/trace` (Cloud Logging
    correlates only the full `projects/P/traces/T` form).
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudJsonFormatter(project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        server = logging.getLogger(name)
        if server.handlers:  # one the server switched off has none (uvicorn --no-access-log): it stays off
            server.handlers[:] = []
            server.propagate = True
