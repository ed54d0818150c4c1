"""How well the champion did on recent traffic whose outcomes are known (ground-truth labels).

Drift says the inputs moved; labels say whether the model is still right. The performance is measured
on what the service actually answered: the logged probability and prediction of each labelled request
scored by the champion, so no rescoring is involved. The query engine joins and aggregates; one row of
sums reaches Python, plus one per segment (categorical level or probability bin, about 50), however
many requests the look-back holds.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from churnflow.monitoring.models import LabelledPerformance, SegmentCalibration
from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.labelled import PerformanceCounts, SegmentCounts, performance
from churnflow.outcomes.queries import CALIBRATION_BINS, PROBABILITY_BIN
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
        reliability_gap=counts.reliability_sum / counts.n if counts.reliability_variance else None,
        reliability_se=math.sqrt(counts.reliability_variance) / counts.n if counts.reliability_variance else None,
        segments=tuple(segment_calibration(segment) for segment in counts.segments if segment.n),
        lookback_days=lookback_days,
        unreadable_rows=counts.unreadable_rows,
        skipped_objects=counts.skipped_objects,
    )


def segment_calibration(counts: SegmentCounts) -> SegmentCalibration:
    """Observed and predicted churn of one segment; a probability bin's level reads `[0.3, 0.4)`."""
    level = counts.level
    if counts.feature == PROBABILITY_BIN:
        low = int(level) / CALIBRATION_BINS
        level = f"[{low:.1f}, {low + 1 / CALIBRATION_BINS:.1f}{']' if int(level) == CALIBRATION_BINS - 1 else ')'}"
    return SegmentCalibration(
        feature=counts.feature,
        level=level,
        rows=counts.n,
        observed_rate=counts.positives / counts.n,
        predicted_rate=counts.sum_probability / counts.n,
        standard_error=math.sqrt(counts.sum_variance) / counts.n,
    )


def labelled_performance(
    settings: CommonSettings, now: datetime, model_version: int, lookback_days: int
) -> LabelledPerformance | None:
    """The champion's performance on labelled requests logged in the last `lookback_days` days and today."""
    start = (now - timedelta(days=lookback_days)).date()
    counts = performance(open_engine(settings), model_version, start, now.date())
    return labelled_metrics(counts, model_version, lookback_days)
