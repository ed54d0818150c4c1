"""The quality gate promotes only a challenger that clears the floor and beats the champion; a tie keeps it."""

import math

import pytest

from churnflow.retraining.gate import judge_challenger
from churnflow.settings import RetrainSettings


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        (0.86, 0.84, True, "> champion AUC 0.8400 + tolerance 0.0100"),
        (0.845, 0.84, False, "a tie keeps the champion"),
        (0.85, 0.84, False, "a tie keeps the champion"),  # a gain of exactly the tolerance is a tie
        (0.835, 0.84, False, "challenger AUC 0.8350 < champion AUC 0.8400"),
        (0.60, None, False, "below the floor 0.7000"),
        (0.75, None, True, "no champion"),
        (0.50, 0.40, False, "below the floor"),
        (math.nan, 0.84, False, "undefined"),
    ],
)
def test_gate(challenger, champion, promote, why):
    decision = judge_challenger(challenger, champion, auc_floor=0.70, tolerance=0.01)
    assert decision.promote is promote
    assert why in decision.reason


@pytest.mark.parametrize("tolerance", [0.0, 0.005])
def test_a_tie_at_exact_equality_keeps_the_champion(tolerance):
    auc = 0.8461453
    decision = judge_challenger(auc, auc, auc_floor=0.70, tolerance=tolerance)
    assert not decision.promote and "a tie keeps the champion" in decision.reason
    assert judge_challenger(math.nextafter(auc, 1.0), auc, auc_floor=0.70, tolerance=0.0).promote


def test_the_default_tolerance_keeps_the_champion_on_a_tie():
    settings = RetrainSettings()
    assert not judge_challenger(0.84, 0.84, settings.auc_floor, settings.auc_tolerance).promote
