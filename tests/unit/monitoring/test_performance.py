"""Champion performance on labelled traffic, from what the service logged."""

import pytest

from churnflow.monitoring.performance import labelled_metrics


def record(i, version, probability):
    return {
        "request_id": f"r{i}",
        "model_version": version,
        "churn_probability": probability,
        "churn_prediction": probability >= 0.5,
    }


def test_measures_only_the_champion_rows_that_have_labels():
    records = [
        record(0, 1, 0.9),
        record(1, 1, 0.2),
        record(2, 1, 0.6),
        record(3, 1, 0.4),
        record(4, 2, 0.99),
        record(5, 1, 0.7),
    ]
    outcomes = {"r0": True, "r1": False, "r2": False, "r3": True, "r4": True}
    performance = labelled_metrics(records, outcomes, model_version=1, lookback_days=7)
    assert performance.rows == 4
    assert performance.churn_rate == 0.5
    assert performance.accuracy == 0.5  # r0 and r1 right, r2 and r3 wrong
    assert performance.roc_auc == pytest.approx(0.75)


def test_no_labels_no_metrics_and_one_class_no_auc():
    assert labelled_metrics([record(0, 1, 0.9)], {}, 1, 7) is None
    only_churners = labelled_metrics([record(0, 1, 0.9), record(1, 1, 0.3)], {"r0": True, "r1": True}, 1, 7)
    assert only_churners.roc_auc is None and only_churners.accuracy == 0.5
