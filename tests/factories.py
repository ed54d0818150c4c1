"""Valid messages for tests, with only what a test cares about changed (plain functions, no fixtures)."""

from datetime import UTC, datetime, timedelta

from churnflow.core.messages import RetrainRequested

CHECKED_AT = datetime(2026, 11, 5, 12, tzinfo=UTC)
"""When the default request's check ran (its window ends then)."""


def retrain_request(**changes: object) -> RetrainRequested:
    """The retrain request a prediction-drift check of model `churn` v3 publishes, with `changes`."""
    fields: dict[str, object] = {
        "model_name": "churn",
        "champion_version": 3,
        "reason": "prediction: predicted churn probability drift 0.400 (rule ≥ 0.200)",
        "rules": ("prediction",),
        "drift_share": 0.21,
        "drifted_columns": ("tenure", "churn_probability"),
        "window_start": CHECKED_AT - timedelta(hours=1),
        "window_end": CHECKED_AT,
        "window_rows": 2000,
        "check_id": "20261105T120000Z-0123abcd",
        "report_uri": "gs://b/reports/checks/20261105T120000Z-0123abcd/report.html",
    }
    return RetrainRequested.model_validate(fields | changes)
