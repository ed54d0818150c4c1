"""The promotion quality gate: a pure decision over metrics measured on one shared evaluation set."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger may replace the champion, and why."""

    promote: bool
    reason: str
    challenger_auc: float
    champion_auc: float | None


def judge_challenger(
    challenger_auc: float, champion_auc: float | None, auc_floor: float, tolerance: float
) -> GateDecision:
    """Promote when the challenger's AUC clears the absolute floor and beats the champion's on the same
    evaluation set by more than `tolerance`: a smaller gain is a tie, and a tie keeps the champion (a new
    version that is no better only churns the registry and restarts the cooldown). Without a champion,
    the floor alone decides.
    """
    if math.isnan(challenger_auc):
        return GateDecision(
            False, "challenger AUC is undefined (evaluation set has one class)", challenger_auc, champion_auc
        )
    if challenger_auc < auc_floor:
        return GateDecision(
            False,
            f"challenger AUC {challenger_auc:.4f} is below the floor {auc_floor:.4f}",
            challenger_auc,
            champion_auc,
        )
    if champion_auc is None:
        return GateDecision(True, f"no champion; AUC {challenger_auc:.4f} clears the floor", challenger_auc, None)
    if challenger_auc < champion_auc:
        return GateDecision(
            False,
            f"challenger AUC {challenger_auc:.4f} < champion AUC {champion_auc:.4f}",
            challenger_auc,
            champion_auc,
        )
    if challenger_auc <= champion_auc + tolerance:
        return GateDecision(
            False,
            f"challenger AUC {challenger_auc:.4f} ties champion AUC {champion_auc:.4f} (gain "
            f"{challenger_auc - champion_auc:.4f} <= tolerance {tolerance:.4f}): a tie keeps the champion",
            challenger_auc,
            champion_auc,
        )
    return GateDecision(
        True,
        f"challenger AUC {challenger_auc:.4f} > champion AUC {champion_auc:.4f} + tolerance {tolerance:.4f}",
        challenger_auc,
        champion_auc,
    )
