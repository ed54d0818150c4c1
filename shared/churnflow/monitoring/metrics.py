"""What a drift check reports to operators: Prometheus metrics and one event log line per check.

A Cloud Function is not scraped: its instances come and go with the requests, and Managed
Prometheus takes no pushes. So every check also writes one JSON event line (`event: drift_check`,
plus one `drift_rule_fired` line per rule that fired), which Cloud Logging turns into log-based
metrics and alerts (`infra/monitoring/`); the monitor's `GET /metrics` serves the same figures in
Prometheus text for a scraper that can reach it (the local stack, Compose, a long-lived instance).

Rules are read from the check's result by name (`retrain_rules`: drift and performance), so a new rule of the
policy is counted and alerted on without a change here.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from churnflow.monitoring.models import CheckSummary

log = logging.getLogger(__name__)

CHECK_EVENT = "drift_check"
RULE_EVENT = "drift_rule_fired"
UNAVAILABLE = "unavailable"
"""The status of a check that a service it depends on (GCS, MLflow, Pub/Sub, BigQuery) failed."""
FAILED = "error"
"""The status of a check that failed unexpectedly."""
DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900)

disable_created_metrics()


def check_event(summary: CheckSummary) -> dict[str, Any]:
    """The fields of a check's event line (the log-based metrics extract them by these names)."""
    performance = summary.performance
    return {
        "event": CHECK_EVENT,
        "check_id": summary.check_id,
        "status": str(summary.status),
        "champion_version": summary.champion_version,
        "rows": summary.window.tested_rows,
        "drift_share": summary.drift.drift_share if summary.drift else None,
        "rules_fired": list(summary.retrain_rules),
        "trigger": summary.trigger.action,
        "labelled_rows": performance.rows if performance else 0,
        "labelled_roc_auc": performance.roc_auc if performance else None,
        "calibration_gap": calibration_gap(summary),
        "duration_s": summary.duration_s,
    }


def calibration_gap(summary: CheckSummary) -> float | None:
    """Mean predicted probability minus the observed churn rate on the labelled rows (0: calibrated)."""
    performance = summary.performance
    if performance is None or performance.mean_probability is None:
        return None
    return round(performance.mean_probability - performance.churn_rate, 6)


def log_check(summary: CheckSummary) -> None:
    """Write the check's event line, and one line per rule that fired."""
    event = check_event(summary)
    log.info("check %s: %s", summary.check_id, summary.status, extra=event)
    for rule in event["rules_fired"]:
        log.warning(
            "rule %s fired on %s v%s",
            rule,
            summary.model_name,
            summary.champion_version,
            extra={"event": RULE_EVENT, "rule": rule, "check_id": summary.check_id},
        )


def failed_event(status: str) -> dict[str, str]:
    """The event fields of a check that did not finish (`UNAVAILABLE` or `FAILED`)."""
    return {"event": CHECK_EVENT, "status": status}


class MonitorMetrics:
    """The monitor process's metrics: checks by outcome, rules fired, the last check's figures, durations."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.checks = Counter("churnflow_monitor_checks", "Drift checks by outcome.", ["status"], registry=r)
        self.rules = Counter("churnflow_monitor_rules_fired", "Policy rules that fired, by rule.", ["rule"], registry=r)
        self.retrain = Counter(
            "churnflow_monitor_retrain_requests", "Retrain requests by what the check did.", ["action"], registry=r
        )
        self.duration = Histogram(
            "churnflow_monitor_check_duration_seconds",
            "Time of a finished check.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.last = Gauge(
            "churnflow_monitor_last_check_timestamp_seconds", "When the last check finished, by outcome.", ["status"],
            registry=r,
        )  # fmt: skip
        self.figures = {
            name: Gauge(f"churnflow_monitor_{name}", text, registry=r)
            for name, text in (
                ("drift_share", "Share of the features Evidently flags, in the last check that tested drift."),
                ("window_rows", "Rows the last check tested."),
                ("labelled_roc_auc", "The champion's ROC-AUC on labelled recent requests (last check)."),
                ("calibration_gap", "Mean predicted probability minus observed churn rate on labelled requests."),
                ("labelled_rows", "Labelled requests the last check measured the champion on."),
            )
        }

    def observe(self, summary: CheckSummary, finished_at: float) -> None:
        """Count one finished check and keep its figures."""
        self.checks.labels(str(summary.status)).inc()
        self.last.labels(str(summary.status)).set(finished_at)
        self.retrain.labels(summary.trigger.action).inc()
        self.duration.observe(summary.duration_s)
        event = check_event(summary)
        for rule in event["rules_fired"]:
            self.rules.labels(rule).inc()
        for name in ("drift_share", "labelled_roc_auc", "calibration_gap", "labelled_rows"):
            if event[name] is not None:
                self.figures[name].set(event[name])
        self.figures["window_rows"].set(event["rows"])

    def failed(self, status: str, finished_at: float) -> None:
        """Count a check that did not finish."""
        self.checks.labels(status).inc()
        self.last.labels(status).set(finished_at)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper asks for, and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
