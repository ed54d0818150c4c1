"""Champion performance on labelled traffic, from the sums the query engine returns."""

import pytest

from churnflow.monitoring.performance import labelled_metrics
from churnflow.outcomes.labelled import PerformanceCounts


def counts(**changes):
    base = dict(
        n=4,
        positives=2,
        correct=2,
        sum_probability=2.1,
        sum_squared_error=0.9,
        positive_rank_sum_x2=12,
        unreadable_rows=1,
        skipped_objects=0,
    )
    return PerformanceCounts(**{**base, **changes})


def test_metrics_follow_from_the_counts():
    performance = labelled_metrics(counts(), model_version=1, lookback_days=7)
    assert performance.rows == 4 and performance.churn_rate == 0.5 and performance.accuracy == 0.5
    assert performance.roc_auc == pytest.approx((12 - 2 * 3) / (2 * 2 * 2))
    assert performance.mean_probability == pytest.approx(0.525) and performance.brier == pytest.approx(0.225)
    assert performance.unreadable_rows == 1


def test_no_labels_no_metrics_and_one_class_no_auc():
    assert labelled_metrics(counts(n=0, positives=0), 1, 7) is None
    only_churners = labelled_metrics(counts(positives=4), 1, 7)
    assert only_churners.roc_auc is None and only_churners.accuracy == 0.5
