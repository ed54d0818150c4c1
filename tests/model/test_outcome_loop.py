"""The outcome-aware loop on real rows: the performance rule, the fit-robust drift rule and the gate.

The champion is trained on 70 % of the IBM rows; labelled traffic is drawn from the other 30 %, so no
request is a customer the champion trained on. Outcomes change as `churnflow.sim.scenarios` describes.
The full table (30 seeds, every cell) is `make bench-scenarios`; these tests pin its main claims.
"""

import numpy as np
import pytest

from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring import drift, performance
from churnflow.monitoring.models import ExpectedQuality, PerformanceRule, Rule
from churnflow.monitoring.performance_rule import PerformancePolicy, assess_performance, counts_of
from churnflow.monitoring.policy import DriftPolicy, assess_drift
from churnflow.retraining import evaluation, gate
from churnflow.settings import MonitorSettings, RetrainSettings
from churnflow.sim import scenarios
from churnflow.training import data, pipeline
from churnflow.training.compiler import compile_pipeline

SEEDS = range(30)
RULE = PerformancePolicy.from_settings(MonitorSettings())


@pytest.fixture(scope="module")
def world(dataset):
    order = np.random.default_rng(0).permutation(len(dataset))
    cut = int(0.7 * len(dataset))
    base, pool = dataset.iloc[order[:cut]].reset_index(drop=True), dataset.iloc[order[cut:]].reset_index(drop=True)
    trained = pipeline.train(base, random_state=0)
    m = trained.metrics
    expected = ExpectedQuality(
        roc_auc=m["roc_auc"], brier=m["brier"], rows=int(m["rows"]), churn_rate=m["churn_rate"], brier_se=m["brier_se"]
    )
    return base, pool, CompiledScorer(compile_pipeline(trained.model)), expected, trained


def verdict(world, rows, seed, outcome):
    _, pool, scorer, expected, _ = world
    labelled = scenarios.labelled_window(pool, "in_distribution", rows, seed, outcome)
    counts = counts_of(data.target(labelled).to_numpy(), evaluation.probabilities(scorer, labelled), labelled)
    known = performance.labelled_metrics(counts, 1, 30)
    return known, assess_performance(known, expected, RULE)


@pytest.mark.parametrize("rows", [1000, 2000, 5000])
def test_in_distribution_labelled_windows_never_fire(world, rows):
    fired = [v.reason for _, v in (verdict(world, rows, seed, "unchanged") for seed in SEEDS) if v.degraded]
    assert fired == []


@pytest.mark.parametrize("outcome", ["fibre_churn_falls", "echeck_churn_falls", "long_tenure_churn_rises"])
def test_outcome_changes_with_unchanged_inputs_are_detected_every_time(world, outcome):
    results = [verdict(world, 2000, seed, outcome) for seed in SEEDS]
    expected_auc = world[3].roc_auc
    assert all(expected_auc - known.roc_auc >= 0.05 for known, _ in results)  # the change costs ≥ 0.05 AUC
    assert [v.degraded for _, v in results] == [True] * len(SEEDS)


@pytest.mark.parametrize("outcome", ["seniors_churn_rises", "one_year_churn_rises", "fibre_label_noise_25"])
def test_a_change_in_one_segment_near_a_005_auc_drop_is_detected_by_the_reference_free_tests(world, outcome):
    results = [verdict(world, 2000, seed, outcome) for seed in SEEDS]
    drops = [world[3].roc_auc - known.roc_auc for known, _ in results]
    assert 0.02 < np.mean(drops) < 0.10  # the edge of the target, not a blatant change
    # at the edge a window's own AUC noise decides whether it counts as a 0.05 drop: one miss is allowed
    missed = [v.reason for drop, (_, v) in zip(drops, results, strict=True) if drop >= 0.05 and not v.degraded]
    assert len(missed) <= 1, missed
    reference_free = {PerformanceRule.SEGMENT, PerformanceRule.RELIABILITY}
    caught = [bool(reference_free & set(v.rules_fired)) for _, v in results]
    assert sum(caught) >= 27, [v.reason for _, v in results]


@pytest.fixture(scope="module")
def fits(dataset):
    """Three champions of different splits: they spread their weight over the charges differently."""
    trained = [pipeline.train(dataset, random_state=seed) for seed in (0, 1, 42)]
    return [(CompiledScorer(compile_pipeline(t.model)), t.train) for t in trained]


@pytest.mark.parametrize("factor", [1.15, 1.5])
def test_a_price_change_is_drift_whatever_the_fit(dataset, fits, factor):
    change = scenarios.Scenario("price", "", True, transform=scenarios.price_change(factor))
    for scorer, train in fits:
        reference = drift.with_prediction(train, scorer)
        for seed in range(3):
            current = drift.with_prediction(scenarios.window(dataset, change, 1000, seed), scorer)
            result, _ = drift.score_columns(reference, current, drift.DriftConfig())
            decision = assess_drift(result, scorer.feature_importance(), DriftPolicy.from_settings(MonitorSettings()))
            assert decision.drifted and Rule.FEATURE in decision.rules_fired


def retrain(world, outcome, seed):
    """The job's retrain on 3000 labelled requests: the gate's decision, and the three models on newer ones."""
    base, pool, champion, _, _ = world
    settings = RetrainSettings()
    recent = scenarios.labelled_window(pool, "in_distribution", 3000, seed, outcome)
    recent = recent.assign(ts=1.8e9 + 60.0 * np.arange(len(recent)))
    parts = evaluation.assemble(base, recent, settings.oot_fraction, None, settings.base_weight_share, 0.2, 0)
    challenger = CompiledScorer(compile_pipeline(pipeline.fit(parts.train, sample_weight=parts.weights)))
    recent_only = CompiledScorer(compile_pipeline(pipeline.fit(parts.recent_train)))
    y = data.target(parts.out_of_time).to_numpy()
    se = evaluation.paired_brier_se(
        y,
        evaluation.probabilities(challenger, parts.out_of_time),
        evaluation.probabilities(champion, parts.out_of_time),
    )
    decision = gate.judge_challenger(
        evaluation.scorer_metrics(challenger, parts.out_of_time),
        evaluation.scorer_metrics(champion, parts.out_of_time),
        evaluation.scorer_metrics(challenger, parts.base_check),
        evaluation.scorer_metrics(champion, parts.base_check),
        gate.GatePolicy.from_settings(settings),
        se,
    )
    newer = scenarios.labelled_window(pool, "in_distribution", 2000, seed + 1000, outcome)
    briers = {
        name: evaluation.scorer_metrics(model, newer)["brier"]
        for name, model in (("challenger", challenger), ("champion", champion), ("recent_only", recent_only))
    }
    return decision, briers


def test_after_an_outcome_change_the_promoted_model_is_near_a_recent_only_model(world):
    for seed in range(3):
        decision, brier = retrain(world, "fibre_churn_falls", seed)
        assert decision.promote, decision.reason
        assert brier["challenger"] <= 1.10 * brier["recent_only"] and brier["challenger"] < brier["champion"]


def test_without_a_change_the_gate_keeps_the_champion(world):
    decisions = [retrain(world, "unchanged", seed)[0] for seed in range(3)]
    assert not any(d.promote for d in decisions), [d.reason for d in decisions]
