"""Cloud Function of the drift monitor: `POST /` runs a check (Cloud Scheduler), `GET /view_report` shows them,
`GET /metrics` has this instance's check metrics in Prometheus text (every check also writes an event log line).

Run locally: functions-framework --target=monitor --source=functions/monitor/main.py --port 8081
"""

from __future__ import annotations

import logging
import time
from functools import cache

import flask
import functions_framework

from churnflow.logs import configure_logging
from churnflow.monitoring import views
from churnflow.monitoring.check import run_check
from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.metrics import FAILED, UNAVAILABLE, MonitorMetrics, failed_event
from churnflow.monitoring.reports import ReportStore
from churnflow.settings import MonitorSettings

log = logging.getLogger("churnflow.monitor")
JSON = {"Content-Type": "application/json"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
UNAVAILABLE_BODY = '{"error": "a service the check depends on is unavailable; retry later"}'


@cache
def settings() -> MonitorSettings:
    """The function's settings, read from the environment on the first request."""
    config = MonitorSettings()
    configure_logging(project=config.project)
    return config


@cache
def metrics() -> MonitorMetrics:
    """This instance's check metrics."""
    return MonitorMetrics()


@functions_framework.http
def monitor(request: flask.Request) -> tuple[str | bytes, int, dict[str, str]]:
    """Dispatch: the report viewer on GET /view_report, metrics on GET /metrics, a drift check on POST;
    any upstream failure → 503. Error bodies are generic (no URL, bucket or path); the details go to the log.
    """
    config = settings()
    path = request.path.rstrip("/")
    if path.endswith("/metrics") and request.method == "GET":
        body, content_type = metrics().exposition(request.headers.get("Accept"))
        return body, 200, {"Content-Type": content_type}
    viewing = path.endswith("/view_report")
    if request.method != ("GET" if viewing else "POST"):
        return '{"error": "method not allowed"}', 405, JSON
    try:
        if not viewing:
            summary = run_check(config)
            metrics().observe(summary, time.time())
            return summary.model_dump_json(), 200, JSON
        store = ReportStore(config.project, config.bucket)
        check = request.args.get("check")
        if check and request.args.get("raw") == "1":
            report = store.read_report(check)
            return (report, 200, HTML) if report else ("no such report", 404, HTML)
        latest = store.read_latest()
        return views.index_page(store.read_index(), check or (latest.check_id if latest else None)), 200, HTML
    except MonitorUnavailable as error:  # the details name internal addresses: the log has them, the body not
        log.error("check failed, to be retried: %s", error, extra=_failure(viewing, UNAVAILABLE))
        return UNAVAILABLE_BODY, 503, JSON
    except Exception:
        log.exception("check failed unexpectedly", extra=_failure(viewing, FAILED))
        return '{"error": "internal error"}', 500, JSON


def _failure(viewing: bool, status: str) -> dict[str, str] | None:
    """A failed check is counted and its log line is the check's event; a failed page view is neither."""
    if viewing:
        return None
    metrics().failed(status, time.time())
    return failed_event(status)
