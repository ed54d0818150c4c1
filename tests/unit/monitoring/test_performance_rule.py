"""The performance rule on constructed labelled windows: bounds, each test (segments and reliability too), too few
labels (pure)."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnflow.core import schema
from churnflow.monitoring.models import ExpectedQuality, LabelledPerformance, PerformanceRule, SegmentCalibration
from churnflow.monitoring.performance import labelled_metrics
from churnflow.monitoring.performance_rule import (
    PerformancePolicy,
    assess_performance,
    auc_standard_error,
    counts_of,
)
from churnflow.settings import MonitorSettings

EXPECTED = ExpectedQuality(roc_auc=0.84, brier=0.138)
DEFAULTS = PerformancePolicy.from_settings(MonitorSettings())
POLICY = replace(DEFAULTS, min_labels=500, confidence=0.995, auc_margin=0.0, calibration_margin=0.02, brier_margin=0.0)


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
    assert replace(DEFAULTS, confidence=0.995).z == pytest.approx(2.5758, abs=1e-4)
    assert math.isclose(replace(DEFAULTS, confidence=0.5 + 1e-12).z, 0.0, abs_tol=1e-6)


def test_the_expectations_own_sampling_error_widens_the_bounds():
    alone = assess_performance(known(auc=0.80), EXPECTED, POLICY)
    measured = ExpectedQuality(roc_auc=0.84, brier=0.138, rows=1409, churn_rate=0.265)
    both = assess_performance(known(auc=0.80), measured, POLICY)
    assert both.auc_upper_bound > alone.auc_upper_bound and both.brier_lower_bound < alone.brier_lower_bound


def segment(level, rows, observed, predicted, feature="Contract"):
    """A segment whose probabilities all equal `predicted` (so its standard error is √(p(1−p)/n))."""
    return SegmentCalibration(
        feature=feature,
        level=level,
        rows=rows,
        observed_rate=observed,
        predicted_rate=predicted,
        standard_error=math.sqrt(predicted * (1 - predicted) / rows),
    )


CALIBRATED = [segment(f"level {i}", 400, 0.30, 0.30) for i in range(9)]
SEGMENTS = replace(DEFAULTS, min_labels=500, confidence=0.999, segment_margin=0.03, segment_min_rows=200)


def test_one_segment_off_by_more_than_its_noise_and_the_margin_fires_and_is_named():
    # 10 segments tested: z = Φ⁻¹(1 − 0.001/20) = 3.89; SE of 300 rows at 0.42 = 0.0285 → bound 0.141
    window = known().model_copy(update={"segments": (*CALIBRATED, segment("Yes", 300, 0.60, 0.42, "SeniorCitizen"))})
    decision = assess_performance(window, ExpectedQuality(), SEGMENTS)
    assert decision.rules_fired == (PerformanceRule.SEGMENT,)
    assert decision.worst_segment == "SeniorCitizen=Yes" and decision.segments_tested == 10
    assert decision.segment_gap == pytest.approx(-0.18)
    assert decision.segment_bound == pytest.approx(0.03 + 3.8906 * math.sqrt(0.42 * 0.58 / 300), abs=1e-4)
    assert "SeniorCitizen=Yes" in decision.reason and "the worst of 10 segments" in decision.reason


def test_a_segment_gap_within_noise_and_margin_or_too_small_a_segment_does_not_fire():
    within = known().model_copy(update={"segments": (*CALIBRATED, segment("Yes", 300, 0.55, 0.42, "SeniorCitizen"))})
    assert not assess_performance(within, ExpectedQuality(), SEGMENTS).degraded  # 0.13 < bound 0.141
    tiny = known().model_copy(update={"segments": (*CALIBRATED, segment("Yes", 150, 0.90, 0.42, "SeniorCitizen"))})
    decision = assess_performance(tiny, ExpectedQuality(), SEGMENTS)
    assert not decision.degraded and decision.segments_tested == 9  # under segment_min_rows: not tested


def test_the_bonferroni_correction_widens_the_bound_with_the_number_of_segments():
    gap = segment("Yes", 300, 0.555, 0.42, "SeniorCitizen")  # 0.135: over the bound of 2 segments, under that of 10
    few = known().model_copy(update={"segments": (CALIBRATED[0], gap)})
    many = known().model_copy(update={"segments": (*CALIBRATED, gap)})
    assert assess_performance(few, ExpectedQuality(), SEGMENTS).degraded
    assert not assess_performance(many, ExpectedQuality(), SEGMENTS).degraded


def test_reliability_fires_when_outcomes_are_less_predictable_than_the_probabilities_say():
    rng = np.random.default_rng(3)
    p = rng.beta(1, 3, 4000)
    y = (rng.random(4000) < p).astype(int)
    noisy = np.where(rng.random(4000) < 0.08, 1 - y, y)  # 8 % of the labels flipped
    policy = replace(DEFAULTS, min_labels=500, confidence=0.999, reliability_margin=0.006)
    honest = assess_performance(labelled_metrics(counts_of(y, p), 1, 30), ExpectedQuality(), policy)
    flipped = assess_performance(labelled_metrics(counts_of(noisy, p), 1, 30), ExpectedQuality(), policy)
    assert PerformanceRule.RELIABILITY not in honest.rules_fired and abs(honest.reliability_gap) < 0.006
    assert PerformanceRule.RELIABILITY in flipped.rules_fired and flipped.reliability_gap > honest.reliability_bound
    assert "Spiegelhalter" in flipped.reason


def test_reliability_sums_are_spiegelhalters():
    p, y = np.array([0.1, 0.4, 0.8, 0.8]), np.array([0, 1, 1, 0])
    metrics = labelled_metrics(counts_of(y, p), 1, 30)
    numerator = ((y - p) * (1 - 2 * p)).sum()
    assert metrics.reliability_gap == pytest.approx(numerator / 4)
    assert metrics.reliability_se == pytest.approx(math.sqrt(((1 - 2 * p) ** 2 * p * (1 - p)).sum()) / 4)


def test_counts_of_sums_each_categorical_level_and_probability_bin():
    rows = pd.DataFrame([schema.EXAMPLE_CUSTOMER] * 4).assign(Contract=["One year", "One year", "Two year", "Two year"])
    p, y = np.array([0.05, 0.15, 0.95, 1.0]), np.array([0, 1, 1, 1])
    metrics = labelled_metrics(counts_of(y, p, rows), 1, 30)
    by_name = {s.name: s for s in metrics.segments}
    one_year = by_name["Contract=One year"]
    assert (one_year.rows, one_year.observed_rate, one_year.predicted_rate) == (2, 0.5, pytest.approx(0.1))
    assert one_year.standard_error == pytest.approx(math.sqrt(0.05 * 0.95 + 0.15 * 0.85) / 2)
    assert by_name["probability_bin=[0.9, 1.0]"].rows == 2  # p = 1.0 falls in the last bin
    assert by_name["probability_bin=[0.0, 0.1)"].rows == 1
    assert sum(s.rows for s in metrics.segments if s.feature == "gender") == 4
    assert {s.feature for s in metrics.segments} == {*schema.CATEGORICAL_NAMES, "probability_bin"}
