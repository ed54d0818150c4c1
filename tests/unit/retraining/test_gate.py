"""The gate on constructed cases: out-of-time AUC and Brier, the base check, ties, too few labels (pure)."""

import math

import pytest

from churnflow.retraining.gate import GatePolicy, judge_challenger
from churnflow.settings import RetrainSettings

POLICY = GatePolicy(
    auc_floor=0.70,
    auc_tolerance=0.005,
    brier_tolerance=0.001,
    base_auc_tolerance=0.10,
    gain_z=2.0,
    min_oot_rows=200,
    auc_gain=0.005,
)
CHAMPION_OOT = {"roc_auc": 0.80, "brier": 0.160, "rows": 900.0}
BASE = {"roc_auc": 0.84, "brier": 0.138, "rows": 1400.0}


def oot(auc, brier, rows=900.0):
    return {"roc_auc": auc, "brier": brier, "rows": rows}


def judge(challenger_oot, challenger_base=BASE, champion_oot=CHAMPION_OOT, champion_base=BASE):
    return judge_challenger(challenger_oot, champion_oot, challenger_base, champion_base, POLICY)


def test_better_on_the_newest_traffic_in_auc_and_brier_is_promoted():
    decision = judge(oot(0.83, 0.140))
    assert decision.promote and decision.reason.startswith("promote on 900 out-of-time rows")
    assert decision.checks == {"oot_auc": True, "oot_brier": True, "base": True, "gain": True}
    assert decision.checks_tag() == "oot_auc=pass,oot_brier=pass,base=pass,gain=pass"


def test_worse_on_the_newest_traffic_is_refused_even_if_better_on_the_base_rows():
    better_base = {"roc_auc": 0.86, "brier": 0.130, "rows": 1400.0}
    decision = judge(oot(0.78, 0.150), challenger_base=better_base)
    assert not decision.promote and decision.checks["oot_auc"] is False
    assert "oot_auc failed: out-of-time AUC 0.7800 vs champion 0.8000" in decision.reason


def test_a_higher_auc_with_worse_calibration_is_refused():
    decision = judge(oot(0.82, 0.170))
    assert not decision.promote and decision.checks == {
        "oot_auc": True,
        "oot_brier": False,
        "base": True,
        "gain": True,
    }
    assert "oot_brier failed: out-of-time Brier 0.1700 vs champion 0.1600" in decision.reason


def test_a_loss_within_the_auc_tolerance_with_better_calibration_is_promoted():
    assert judge(oot(0.797, 0.150)).promote


def test_the_auc_a_challenger_may_lose_and_the_auc_gain_that_counts_are_separate():
    policy = GatePolicy.from_settings(RetrainSettings())  # the defaults

    def decide(auc, brier, se=0.002):
        return judge_challenger(oot(auc, brier), CHAMPION_OOT, BASE, BASE, policy, brier_gain_se=se)

    # far better calibrated, 0.02 AUC lower (about a standard error on 900 rows): promoted
    assert decide(0.78, 0.140).promote
    assert decide(0.765, 0.140).checks["oot_auc"] is False  # 0.035 lower: refused
    small = decide(0.812, 0.1595)  # +0.012 AUC, a Brier gain within the noise: a tie
    assert not small.promote and "AUC > +0.0150" in small.reason
    assert decide(0.82, 0.1595).promote  # +0.02 AUC counts


def test_a_collapse_on_the_base_check_set_is_refused():
    collapsed = {"roc_auc": 0.70, "brier": 0.200, "rows": 1400.0}  # e.g. learnt from shuffled labels
    decision = judge(oot(0.83, 0.140), challenger_base=collapsed)
    assert not decision.promote and decision.checks["base"] is False and "base failed" in decision.reason


def test_stale_base_outcomes_do_not_block_a_challenger_that_learnt_the_new_ones():
    # a segment's churn fell: on the base rows' old labels the right challenger loses AUC and Brier
    stale = {"roc_auc": 0.77, "brier": 0.177, "rows": 1400.0}
    assert judge(oot(0.83, 0.120), challenger_base=stale).promote


def test_a_brier_gain_within_the_noise_of_the_rows_is_a_tie():
    gain = oot(0.80, 0.155)  # 0.005 better than the champion
    assert judge_challenger(gain, CHAMPION_OOT, BASE, BASE, POLICY, brier_gain_se=0.001).promote
    noisy = judge_challenger(gain, CHAMPION_OOT, BASE, BASE, POLICY, brier_gain_se=0.003)  # bar 0.006
    assert not noisy.promote and "Brier < −0.0060" in noisy.reason


@pytest.mark.parametrize(
    ("auc", "brier"), [(0.80, 0.160), (0.805, 0.1595), (0.8049, 0.15901)]
)  # equal, and gains within both tolerances
def test_a_tie_keeps_the_champion(auc, brier):
    decision = judge(oot(auc, brier))
    assert not decision.promote and decision.reason.startswith("a tie keeps the champion")
    assert decision.checks["gain"] is False


def test_too_few_recent_labels_keep_the_champion_and_say_so():
    few = judge(oot(0.95, 0.05, rows=150.0), champion_oot=oot(0.6, 0.3, rows=150.0))
    assert not few.promote and few.reason.startswith("too few recent labels to judge: 150 out-of-time rows")
    one_class = judge(oot(math.nan, 0.05), champion_oot=oot(math.nan, 0.3))
    assert not one_class.promote and "too few recent labels" in one_class.reason


def test_without_a_champion_the_floor_on_the_base_check_decides():
    empty = oot(math.nan, math.nan, rows=0.0)
    assert judge(empty, champion_oot=None, champion_base=None).promote
    low = {"roc_auc": 0.65, "brier": 0.2, "rows": 1400.0}
    refused = judge(empty, challenger_base=low, champion_oot=None, champion_base=None)
    assert not refused.promote and "does not clear the floor 0.7000" in refused.reason


def test_policy_from_settings():
    settings = RetrainSettings(auc_tolerance=0.01, min_oot_rows=50)
    assert GatePolicy.from_settings(settings) == GatePolicy(0.75, 0.01, 0.0005, 0.15, 2.0, 50, 0.015)
