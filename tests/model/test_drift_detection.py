"""Detection quality on real rows: Evidently through the monitor's adapter, then the drift policy.

Windows come from `churnflow.sim.scenarios`; the reference is the baseline champion's training rows. Each
window costs about a second of Evidently, so the seeds are counted where the claim needs them.
"""

from functools import cache

import pytest

from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring import drift
from churnflow.monitoring.models import Rule
from churnflow.monitoring.policy import DriftPolicy, assess_drift
from churnflow.settings import MonitorSettings
from churnflow.sim import scenarios
from churnflow.training.compiler import compile_pipeline

POLICY = DriftPolicy.from_settings(MonitorSettings())
SEEDS = range(20)


@pytest.fixture(scope="module")
def check(dataset, training_result):
    """check(scenario, rows, seed) → (policy decision, Evidently's result), cached per window."""
    scorer = CompiledScorer(compile_pipeline(training_result.model))
    reference = drift.with_prediction(training_result.train, scorer)
    importance = scorer.feature_importance()

    @cache
    def run(scenario, rows, seed):
        current = drift.with_prediction(scenarios.window(dataset, scenario, rows, seed), scorer)
        result, _ = drift.score_columns(reference, current, drift.DriftConfig())
        return assess_drift(result, importance, POLICY), result

    return run


@pytest.mark.parametrize(("rows", "seeds"), [(300, SEEDS), (2000, range(5))])
def test_in_distribution_windows_never_drift(check, rows, seeds):
    decisions = [check("in_distribution", rows, seed)[0] for seed in seeds]
    assert [d.rules_fired for d in decisions if d.drifted] == []


def test_month_to_month_fibre_shift_always_drifts(check):
    outcomes = [check("month_to_month_fibre", 1000, seed) for seed in SEEDS]
    assert all(decision.drifted for decision, _ in outcomes)
    assert all({Rule.FEATURE, Rule.PREDICTION} <= set(decision.rules_fired) for decision, _ in outcomes)
    assert all(Rule.IMPORTANCE in decision.rules_over_bar for decision, _ in outcomes)
    # Evidently's default rule (half of the columns) misses a good part of these windows.
    default_hits = sum(result.drift_share >= POLICY.drift_share for _, result in outcomes)
    assert 0 < default_hits < 20


@pytest.mark.parametrize(("scenario", "rule"), [("new_customers", Rule.IMPORTANCE), ("price_rise", Rule.FEATURE)])
def test_policy_catches_shifts_the_default_rule_misses(check, scenario, rule):
    outcomes = [check(scenario, 2000, seed) for seed in range(5)]
    assert all(decision.drifted and rule in decision.rules_fired for decision, _ in outcomes)
    assert all(result.drift_share < POLICY.drift_share for _, result in outcomes)


def test_price_rise_is_caught_on_the_charges_alone(check):
    decision, result = check("price_rise", 2000, 0)
    assert set(decision.counted_columns) == {"MonthlyCharges", "TotalCharges"} and result.drifted_features == 2
    # The two charges pull the log-odds in opposite directions: the predictions barely move.
    assert decision.rules_fired == (Rule.IMPORTANCE, Rule.FEATURE)
    assert decision.prediction_score < POLICY.prediction_threshold


def test_shift_in_a_feature_the_model_barely_uses_is_not_drift(check):
    outcomes = [check("gender_mix", 2000, seed) for seed in range(5)]
    assert all(result.column("gender").drifted for _, result in outcomes)  # Evidently sees it...
    assert not any(decision.drifted for decision, _ in outcomes)  # ...the policy weighs it at ~0
