"""The drift policy's rules on hand-made results: which fires, and what the decision says (pure)."""

import math
from dataclasses import replace

import pytest

from churnflow.core import schema
from churnflow.monitoring.models import ColumnDrift, DriftResult, Rule
from churnflow.monitoring.policy import DriftPolicy, assess_drift, importance_shares, noise_floor
from churnflow.settings import MonitorSettings

# Feature importances shaped like the baseline champion's (log-odds spread).
IMPORTANCE = {name: 0.3 for name in schema.FEATURE_NAMES} | {
    "tenure": 5.0,
    "MonthlyCharges": 2.4,
    "TotalCharges": 2.1,
    "Contract": 1.3,
    "gender": 0.02,
}
# No persistence margin: each rule fires as soon as it is over its bar (persistence is tested on its own).
POLICY = replace(DriftPolicy.from_settings(MonitorSettings()), persistence_margin=0.0)


def result(scores, prediction=0.02, rows=5000, reference=5634):
    """A DriftResult where Evidently flags every column whose score is ≥ 0.1."""
    columns = [
        ColumnDrift(
            column=name,
            kind="numeric" if name in schema.NUMERIC_NAMES else "categorical",
            method="wasserstein" if name in schema.NUMERIC_NAMES else "jensenshannon",
            score=scores.get(name, 0.01),
            threshold=0.1,
            drifted=scores.get(name, 0.01) >= 0.1,
        )
        for name in schema.FEATURE_NAMES
    ]
    columns.append(
        ColumnDrift(
            column="churn_probability",
            kind="prediction",
            method="wasserstein",
            score=prediction,
            threshold=0.1,
            drifted=prediction >= 0.1,
        )
    )
    drifted = sum(c.drifted for c in columns[:-1])
    return DriftResult(
        columns=tuple(columns),
        drifted_features=drifted,
        drift_share=drifted / 19,
        current_rows=rows,
        reference_rows=reference,
    )


def test_stable_window_fires_nothing_and_says_why():
    decision = assess_drift(result({}), IMPORTANCE, POLICY)
    assert not decision.drifted and decision.rules_fired == ()
    assert decision.reason.startswith("no rule fired: share: 0 of 19 features drifted")
    assert decision.importance_drift_share == 0.0 and decision.counted_columns == ()


def test_evidently_share_rule_fires_on_half_the_columns():
    many = {name: 0.15 for name in schema.CATEGORICAL_NAMES[:10]}
    decision = assess_drift(result(many), IMPORTANCE, POLICY)
    assert Rule.SHARE in decision.rules_fired and decision.drifted
    assert "share: 10 of 19 features drifted (share 0.53" in decision.reason


def test_shift_confined_to_the_charges_is_drift_by_importance():
    decision = assess_drift(result({"MonthlyCharges": 0.4, "TotalCharges": 0.2}), IMPORTANCE, POLICY)
    shares = importance_shares(IMPORTANCE)
    assert decision.rules_fired == (Rule.IMPORTANCE, Rule.FEATURE)
    assert decision.importance_drift_share == pytest.approx(shares["MonthlyCharges"] + shares["TotalCharges"])
    assert decision.counted_columns == ("MonthlyCharges", "TotalCharges")
    assert "importance: drifted features MonthlyCharges, TotalCharges carry 0.30 of the champion" in decision.reason


def test_shift_in_a_feature_the_model_barely_uses_is_not_drift():
    decision = assess_drift(result({"gender": 0.45}), IMPORTANCE, POLICY)
    assert not decision.drifted and decision.counted_columns == ("gender",)
    assert decision.importance_drift_share < 0.01


def test_prediction_drift_alone_fires():
    decision = assess_drift(result({}, prediction=0.35), IMPORTANCE, POLICY)
    assert decision.rules_fired == (Rule.PREDICTION,)
    assert decision.reason == "prediction: predicted churn probability drift 0.350 (rule ≥ 0.200)"


def test_several_rules_are_all_named_in_order():
    decision = assess_drift(
        result({name: 0.3 for name in schema.FEATURE_NAMES[:12]}, prediction=0.5), IMPORTANCE, POLICY
    )
    assert decision.rules_fired == (Rule.SHARE, Rule.IMPORTANCE, Rule.FEATURE, Rule.PREDICTION)


def test_noise_floor_shrinks_with_the_window():
    assert noise_floor(300, 5634, 4.0) == pytest.approx(4 * math.sqrt(1 / 300 + 1 / 5634))
    assert noise_floor(300, 5634, 4.0) > 0.2 > noise_floor(2000, 5634, 4.0) > 0.1 > noise_floor(50_000, 5634, 4.0)


def test_small_window_noise_does_not_fire_the_model_aware_rules():
    # At 300 rows tenure and the charges exceed 0.1 in about one window in ten with no real shift.
    noisy = {"tenure": 0.18, "MonthlyCharges": 0.15}
    small = assess_drift(result(noisy, prediction=0.19, rows=300), IMPORTANCE, POLICY)
    assert not small.drifted and small.counted_columns == () and small.noise_floor > 0.2
    large = assess_drift(result(noisy, prediction=0.19, rows=20_000), IMPORTANCE, POLICY)
    assert large.rules_fired == (Rule.IMPORTANCE, Rule.FEATURE)


def test_prediction_bar_is_raised_to_the_noise_floor():
    decision = assess_drift(result({}, prediction=0.22, rows=300), IMPORTANCE, POLICY)
    assert not decision.drifted and "rule ≥ 0.237" in decision.reason


def test_thresholds_come_from_the_policy():
    strict = replace(POLICY, importance_share=0.9, prediction_threshold=0.6, feature_share=0.5)
    decision = assess_drift(result({"MonthlyCharges": 0.4, "TotalCharges": 0.2}, prediction=0.35), IMPORTANCE, strict)
    assert not decision.drifted


def test_policy_from_settings():
    settings = MonitorSettings(importance_share=0.3, prediction_threshold=0.25, noise_factor=3.0)
    assert DriftPolicy.from_settings(settings) == DriftPolicy(0.5, 0.3, 0.25, 3.0, 0.03, 0.25)


# Weights of a fit that put little on MonthlyCharges (0.04 of the importance), as some fits do.
LIGHT_CHARGES = IMPORTANCE | {"MonthlyCharges": 0.6, "TotalCharges": 1.0}


def test_a_price_change_is_drift_whatever_weight_the_fit_gave_the_charges():
    price = {"MonthlyCharges": 0.33, "TotalCharges": 0.14}
    light = assess_drift(result(price), LIGHT_CHARGES, POLICY)
    assert importance_shares(LIGHT_CHARGES)["MonthlyCharges"] < 0.05 and light.importance_drift_share < 0.25
    assert light.rules_fired == (Rule.FEATURE,)
    assert "feature: strongest shift in a feature the champion uses: MonthlyCharges 0.330" in light.reason
    assert assess_drift(result(price), IMPORTANCE, POLICY).drifted


def test_the_feature_rule_ignores_features_the_champion_barely_uses_and_sampling_noise():
    assert not assess_drift(result({"gender": 0.6}), IMPORTANCE, POLICY).drifted  # gender carries < 0.01
    assert not assess_drift(result({"MonthlyCharges": 0.2}, rows=300), IMPORTANCE, POLICY).drifted  # floor 0.24


def test_a_rule_just_over_its_bar_waits_for_a_second_window():
    persistent = replace(POLICY, persistence_margin=0.25)
    near = result({}, prediction=0.22)  # 1.1 × the prediction bar: over it, but by less than the margin
    first = assess_drift(near, IMPORTANCE, persistent)
    assert not first.drifted and first.rules_over_bar == (Rule.PREDICTION,) and first.rules_held == (Rule.PREDICTION,)
    assert "held for persistence" in first.reason
    second = assess_drift(near, IMPORTANCE, persistent, previous_over_bar=frozenset(first.rules_over_bar))
    assert second.rules_fired == (Rule.PREDICTION,) and second.rules_held == ()
    clear = assess_drift(result({}, prediction=0.26), IMPORTANCE, persistent)  # 1.3 × the bar: at once
    assert clear.rules_fired == (Rule.PREDICTION,)
    back = assess_drift(result({}), IMPORTANCE, persistent, previous_over_bar=frozenset({Rule.PREDICTION}))
    assert not back.drifted and back.rules_over_bar == ()


def test_one_heavy_column_just_over_the_floor_does_not_fire_importance_at_once():
    persistent = replace(POLICY, persistence_margin=0.25)
    near = result({"tenure": 0.13}, rows=2000)  # floor 0.114: over it by 14 %, and tenure alone carries 0.3
    first = assess_drift(near, IMPORTANCE, persistent)
    assert not first.drifted and Rule.IMPORTANCE in first.rules_held
    clear = assess_drift(result({"tenure": 0.16}, rows=2000), IMPORTANCE, persistent)
    assert Rule.IMPORTANCE in clear.rules_fired
