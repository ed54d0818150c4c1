"""The performance rule on constructed labelled windows: bounds, each test, too few labels (pure)."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from churnflow.monitoring.models import ExpectedQuality, LabelledPerformance, PerformanceRule
from churnflow.monitoring.performance import labelled_metrics
from churnflow.monitoring.performance_rule import (
    PerformancePolicy,
    assess_performance,
    auc_standard_error,
    counts_of,
)

EXPECTED = ExpectedQuality(roc_auc=0.84, brier=0.138)
POLICY = PerformancePolicy(min_labels=500, confidence=0.995, auc_margin=0.0, calibration_margin=0.02, brier_margin=0.0)


def known(rows=2000, auc=0.84, churn_rate=0.265, mean_probability=0.265, brier=0.138):
    return LabelledPerformance(
        model_version=1,
        rows=rows,
        churn_rate=churn_rate,
        roc_auc=auc,
        accuracy=0.8,
        mean_probability=mean_probability,
        brier=brier,
        lookback_days=30,
    )


def test_a_window_as_good_as_expected_fires_nothing_and_says_why():
    decision = assess_performance(known(), EXPECTED, POLICY)
    assert decision.decided and not decision.degraded and decision.rules_fired == ()
    assert decision.reason.startswith("no performance rule fired on 2000 labelled requests at 99.5% confidence")
    assert decision.auc_upper_bound > 0.84 and decision.brier_lower_bound < 0.138


def test_a_clear_auc_drop_fires_the_auc_rule_with_its_numbers():
    decision = assess_performance(known(auc=0.78), EXPECTED, POLICY)
    assert decision.rules_fired == (PerformanceRule.AUC,)
    assert f"labelled AUC 0.780 (upper bound {decision.auc_upper_bound:.3f}) vs expected 0.840" in decision.reason


def test_an_auc_drop_within_the_label_noise_does_not_fire():
    se = auc_standard_error(0.84, 530, 1470)
    assert 0.010 < se < 0.013  # Hanley–McNeil at 2000 labels
    assert not assess_performance(known(auc=0.84 - 2 * se), EXPECTED, POLICY).degraded
    assert assess_performance(known(auc=0.84 - 3 * se), EXPECTED, POLICY).degraded


def test_the_same_drop_needs_more_labels_to_be_believed():
    assert not assess_performance(known(rows=600, auc=0.80), EXPECTED, POLICY).degraded
    assert assess_performance(known(rows=5000, auc=0.80), EXPECTED, POLICY).degraded


def test_miscalibration_fires_the_calibration_rule_in_either_direction():
    fewer = assess_performance(known(churn_rate=0.15), EXPECTED, POLICY)
    assert PerformanceRule.CALIBRATION in fewer.rules_fired and fewer.calibration_gap == pytest.approx(0.115)
    more = assess_performance(known(churn_rate=0.36), EXPECTED, POLICY)
    assert PerformanceRule.CALIBRATION in more.rules_fired
    assert not assess_performance(known(churn_rate=0.25), EXPECTED, POLICY).degraded  # within the bound


def test_a_worse_brier_fires_the_brier_rule():
    decision = assess_performance(known(brier=0.170), EXPECTED, POLICY)
    assert decision.rules_fired == (PerformanceRule.BRIER,)
    assert "labelled Brier 0.1700" in decision.reason


def test_too_few_labels_decide_nothing():
    decision = assess_performance(known(rows=499, auc=0.5), EXPECTED, POLICY)
    assert not decision.decided and not decision.degraded
    assert decision.reason == "499 labelled requests, fewer than the 500 the performance rule needs"


def test_without_expectations_only_calibration_is_judged():
    decision = assess_performance(known(auc=0.6, brier=0.3), ExpectedQuality(), POLICY)
    assert decision.decided and not decision.degraded and decision.expected_auc is None


def test_counts_of_matches_the_engine_sums_and_sklearn():
    rng = np.random.default_rng(0)
    p = np.round(rng.random(500), 2)  # rounded: many ties, which the rank sum must average
    y = (rng.random(500) < p).astype(int)
    metrics = labelled_metrics(counts_of(y, p), model_version=1, lookback_days=1)
    assert metrics.roc_auc == pytest.approx(roc_auc_score(y, p))
    assert metrics.brier == pytest.approx(np.mean((y - p) ** 2))
    assert metrics.accuracy == pytest.approx(np.mean((p >= 0.5) == y))
    assert metrics.mean_probability == pytest.approx(p.mean())


def test_the_confidence_sets_the_quantile():
    assert PerformancePolicy(confidence=0.995).z == pytest.approx(2.5758, abs=1e-4)
    assert math.isclose(PerformancePolicy(confidence=0.5 + 1e-12).z, 0.0, abs_tol=1e-6)


def test_the_expectations_own_sampling_error_widens_the_bounds():
    alone = assess_performance(known(auc=0.80), EXPECTED, POLICY)
    measured = ExpectedQuality(roc_auc=0.84, brier=0.138, rows=1409, churn_rate=0.265)
    both = assess_performance(known(auc=0.80), measured, POLICY)
    assert both.auc_upper_bound > alone.auc_upper_bound and both.brier_lower_bound < alone.brier_lower_bound
