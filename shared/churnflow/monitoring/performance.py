"""How well the champion did on recent traffic whose outcomes are known (ground-truth labels).

Drift says the inputs moved; labels say whether the model is still right. The performance is measured
on what the service actually answered: the logged probability and prediction of each labelled request
scored by the champion, so no rescoring is involved. The query engine joins and aggregates; only one
row of sums reaches Python, however many requests the look-back holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from churnflow.monitoring.models import LabelledPerformance
from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.labelled import PerformanceCounts, performance
from churnflow.settings import CommonSettings


def labelled_metrics(counts: PerformanceCounts, model_version: int, lookback_days: int) -> LabelledPerformance | None:
    """The metrics of the labelled requests the counts sum over; None when there are none."""
    if not counts.n:
        return None
    return LabelledPerformance(
        model_version=model_version,
        rows=counts.n,
        churn_rate=counts.positives / counts.n,
        roc_auc=counts.roc_auc,
        accuracy=counts.correct / counts.n,
        mean_probability=counts.sum_probability / counts.n,
        brier=counts.sum_squared_error / counts.n,
        brier_variance=max(counts.sum_fourth_power_error / counts.n - (counts.sum_squared_error / counts.n) ** 2, 0.0)
        if counts.sum_fourth_power_error
        else None,
        lookback_days=lookback_days,
        unreadable_rows=counts.unreadable_rows,
        skipped_objects=counts.skipped_objects,
    )


def labelled_performance(
    settings: CommonSettings, now: datetime, model_version: int, lookback_days: int
) -> LabelledPerformance | None:
    """The champion's performance on labelled requests logged in the last `lookback_days` days and today."""
    start = (now - timedelta(days=lookback_days)).date()
    counts = performance(open_engine(settings), model_version, start, now.date())
    return labelled_metrics(counts, model_version, lookback_days)
