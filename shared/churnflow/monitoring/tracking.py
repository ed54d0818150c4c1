"""MLflow adapter: each check becomes one run of the monitoring experiment, its summary as metrics."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from churnflow.monitoring.models import CheckSummary
from churnflow.registry import tags
from churnflow.settings import MonitorSettings

log = logging.getLogger(__name__)


def summary_metrics(summary: CheckSummary) -> dict[str, float]:
    """The numbers of a check, flat, as MLflow metric names and values."""
    window = summary.window
    metrics = {
        "window.valid_rows": float(window.valid_rows),
        "window.tested_rows": float(window.tested_rows),
        "window.bad_lines": float(window.bad_lines),
        "window.bad_rows": float(window.bad_rows),
        "window.corrupt_objects": float(window.corrupt_objects),
        "drifted": float(summary.status == "drift"),
    }
    if summary.drift is not None and summary.decision is not None:
        metrics["drift_share"] = summary.drift.drift_share
        metrics["drifted_features"] = float(summary.drift.drifted_features)
        metrics["importance_drift_share"] = summary.decision.importance_drift_share
        metrics["prediction_drift"] = summary.decision.prediction_score
        metrics["noise_floor"] = summary.decision.noise_floor
        metrics.update({f"score.{c.column}": c.score for c in summary.drift.columns})
        rates = {"predicted_churn_rate": summary.drift.predicted_churn_rate}
        rates["reference_churn_rate"] = summary.drift.reference_churn_rate
        metrics.update({name: value for name, value in rates.items() if value is not None})
    if summary.performance is not None:
        metrics["labelled.rows"] = float(summary.performance.rows)
        metrics["labelled.accuracy"] = summary.performance.accuracy
        metrics["labelled.churn_rate"] = summary.performance.churn_rate
        optional = {"roc_auc": summary.performance.roc_auc, "brier": summary.performance.brier}
        optional["mean_probability"] = summary.performance.mean_probability
        metrics.update({f"labelled.{name}": value for name, value in optional.items() if value is not None})
    if (verdict := summary.performance_decision) is not None:
        metrics["performance.degraded"] = float(verdict.degraded)
        metrics["performance.segments_tested"] = float(verdict.segments_tested)
        bounds = {
            "expected_auc": verdict.expected_auc,
            "auc_upper_bound": verdict.auc_upper_bound,
            "calibration_gap": verdict.calibration_gap,
            "calibration_bound": verdict.calibration_bound,
            "expected_brier": verdict.expected_brier,
            "brier_lower_bound": verdict.brier_lower_bound,
            "segment_gap": verdict.segment_gap,
            "segment_bound": verdict.segment_bound,
            "reliability_gap": verdict.reliability_gap,
            "reliability_bound": verdict.reliability_bound,
        }
        metrics.update({f"performance.{name}": value for name, value in bounds.items() if value is not None})
        metrics.update({f"rule.{rule}": 1.0 for rule in verdict.rules_fired})
    if summary.decision is not None:
        metrics.update({f"rule.{rule}": 1.0 for rule in summary.decision.rules_fired})
    return metrics


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    for _ in range(2):
        if (experiment := client.get_experiment_by_name(name)) is not None:
            return str(experiment.experiment_id)
        try:
            return str(client.create_experiment(name))
        except MlflowException as error:  # another check created it first
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    raise RuntimeError(f"experiment {name!r} neither found nor created")


def log_check(settings: MonitorSettings, summary: CheckSummary) -> str | None:
    """Log a check as an MLflow run; returns the run id, or None (with a warning) if MLflow failed.

    Tracking is for looking back: a tracking outage must not fail the check or repeat its trigger.
    """
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag

        from churnflow.registry.write import configure_client

        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout carries JSON logs only
        configure_client(settings)
        client = MlflowClient(settings.mlflow_tracking_uri)
        run = client.create_run(_experiment_id(client, settings.monitoring_experiment), run_name=summary.check_id)
        now_ms = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now_ms, 0) for k, v in summary_metrics(summary).items()],
            params=[
                Param("window_start", summary.window.start.isoformat()),
                Param("window_end", summary.window.end.isoformat()),
            ],
            tags=[
                RunTag(tags.CHECK_ID, summary.check_id),
                RunTag(tags.CHECK_STATUS, str(summary.status)),
                RunTag(tags.RULES_FIRED, ",".join(summary.retrain_rules)),
                RunTag(
                    tags.PERFORMANCE_REASON,
                    summary.performance_decision.reason[:5000] if summary.performance_decision else "",
                ),
                RunTag(tags.CHECKED_MODEL, f"{summary.model_name}/{summary.champion_version}"),
                RunTag(tags.REPORT_URI, summary.report_uri or ""),
                RunTag(tags.TRIGGER_ACTION, summary.trigger.action),
            ],
        )
        client.set_terminated(run.info.run_id)
    except Exception as error:  # any tracking failure degrades to a warning
        log.warning("could not log check %s to MLflow: %s", summary.check_id, error)
        return None
    return str(run.info.run_id)
