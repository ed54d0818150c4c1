"""A check's metrics and event lines, from known check results."""

import json
import logging
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from churnflow.logs import CloudJsonFormatter
from churnflow.monitoring import metrics
from churnflow.monitoring.metrics import MonitorMetrics
from churnflow.monitoring.models import (
    CheckStatus,
    CheckSummary,
    ColumnDrift,
    DriftDecision,
    DriftResult,
    LabelledPerformance,
    Rule,
    WindowStats,
)
from churnflow.retraining.request_state import RequestOutcome

T0 = datetime(2026, 11, 30, 11, tzinfo=UTC)


def summary(status=CheckStatus.DRIFT, rules=(Rule.IMPORTANCE, Rule.PREDICTION), labelled=True, duration=3.5):
    """A check result as `run_check` returns it."""
    window = WindowStats(
        start=T0, end=T0, objects=3, objects_read=3, corrupt_objects=0, unnamed_objects=0, lines=900,
        parsed_lines=900, bad_lines=0, bad_rows=0, valid_rows=900, tested_rows=900, sampled=False,
        design_effect=1.0, effective_rows=900, sample_error_bound=0.0, model_versions={2: 900},
    )  # fmt: skip
    tested = status is not CheckStatus.INSUFFICIENT_DATA
    drift = DriftResult(
        columns=(ColumnDrift(column="tenure", kind="numeric", method="wasserstein", score=0.3, threshold=0.1,
                             drifted=True),),
        drifted_features=1, drift_share=0.25, current_rows=900, reference_rows=4000,
    )  # fmt: skip
    decision = DriftDecision(
        drifted=bool(rules), rules_fired=rules, reason="r", noise_floor=0.05, importance_drift_share=0.4,
        prediction_score=0.3, counted_columns=("tenure",),
    )  # fmt: skip
    performance = LabelledPerformance(
        model_version=2, rows=400, churn_rate=0.30, roc_auc=0.71, accuracy=0.7, mean_probability=0.42, brier=0.2,
        lookback_days=30,
    )  # fmt: skip
    action = "published" if status is CheckStatus.DRIFT else "none"
    return CheckSummary(
        check_id=f"20261130T110000Z-{status.value[:8]:0<8}",
        checked_at=T0,
        status=status,
        model_name="churn",
        champion_version=2,
        data_fingerprint="abc",
        window=window,
        decision=decision if tested else None,
        drift=drift if tested else None,
        summary_uri="gs://b/s.json",
        trigger=RequestOutcome(action=action, reason="x"),
        performance=performance if labelled else None,
        duration_s=duration,
    )


def values(registry_metrics: MonitorMetrics) -> dict[tuple[str, frozenset], float]:
    text = registry_metrics.exposition(None)[0].decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_checks_rules_figures_and_durations_after_known_checks():
    found = MonitorMetrics()
    found.observe(summary(), 1000.0)
    found.observe(summary(rules=(Rule.SHARE, Rule.IMPORTANCE), duration=12.0), 1100.0)
    found.observe(summary(CheckStatus.NO_DRIFT, rules=(), labelled=False), 1200.0)
    found.observe(summary(CheckStatus.INSUFFICIENT_DATA, rules=(), labelled=False), 1300.0)
    found.failed(metrics.UNAVAILABLE, 1400.0)
    got = values(found)

    def value(name, **labels):
        return got[(name, frozenset(labels.items()))]

    assert value("churnflow_monitor_checks_total", status="drift") == 2
    assert value("churnflow_monitor_checks_total", status="no_drift") == 1
    assert value("churnflow_monitor_checks_total", status="insufficient_data") == 1
    assert value("churnflow_monitor_checks_total", status="unavailable") == 1
    assert value("churnflow_monitor_rules_fired_total", rule="importance") == 2
    assert value("churnflow_monitor_rules_fired_total", rule="prediction") == 1
    assert value("churnflow_monitor_rules_fired_total", rule="share") == 1
    assert value("churnflow_monitor_retrain_requests_total", action="published") == 2
    assert value("churnflow_monitor_retrain_requests_total", action="none") == 2
    assert value("churnflow_monitor_check_duration_seconds_count") == 4
    assert value("churnflow_monitor_check_duration_seconds_sum") == 3.5 + 12.0 + 3.5 + 3.5
    assert value("churnflow_monitor_check_duration_seconds_bucket", le="5.0") == 3
    assert value("churnflow_monitor_drift_share") == 0.25
    assert value("churnflow_monitor_labelled_roc_auc") == 0.71  # kept from the last check that had labels
    assert round(value("churnflow_monitor_calibration_gap"), 6) == 0.12
    assert value("churnflow_monitor_last_check_timestamp_seconds", status="unavailable") == 1400.0
    assert value("churnflow_monitor_last_check_timestamp_seconds", status="drift") == 1100.0


def test_a_rule_the_policy_adds_later_is_counted_by_its_name():
    found = MonitorMetrics()
    new_rule = summary().model_copy(
        update={"decision": summary().decision.model_copy(update={"rules_fired": ("performance",)})}
    )
    found.observe(new_rule, 1.0)
    assert ("churnflow_monitor_rules_fired_total", frozenset({("rule", "performance")})) in values(found)


def test_the_event_lines_carry_the_fields_the_log_based_metrics_extract(caplog):
    caplog.set_level(logging.INFO, logger="churnflow.monitoring.metrics")
    metrics.log_check(summary())
    formatter = CloudJsonFormatter(project="p")
    check, *rules = [json.loads(formatter.format(record)) for record in caplog.records]

    assert {k: check[k] for k in ("event", "status", "rules_fired", "drift_share", "labelled_roc_auc", "trigger")} == {
        "event": "drift_check",
        "status": "drift",
        "rules_fired": ["importance", "prediction"],
        "drift_share": 0.25,
        "labelled_roc_auc": 0.71,
        "trigger": "published",
    }
    assert check["calibration_gap"] == 0.12 and check["duration_s"] == 3.5 and check["severity"] == "INFO"
    assert [(r["event"], r["rule"], r["severity"]) for r in rules] == [
        ("drift_rule_fired", "importance", "WARNING"),
        ("drift_rule_fired", "prediction", "WARNING"),
    ]
