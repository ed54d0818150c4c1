"""The quality gate promotes only a challenger that clears the floor and holds up against the champion."""

import math

import pytest

from churnflow.retraining.gate import judge_challenger


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        (0.86, 0.84, True, ">= champion AUC 0.8400"),
        (0.835, 0.84, True, ">= champion AUC 0.8400 - tolerance 0.0100"),
        (0.82, 0.84, False, "< champion AUC 0.8400 - tolerance 0.0100"),
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
