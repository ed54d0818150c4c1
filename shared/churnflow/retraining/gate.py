"""The promotion quality gate: a pure decision over metrics of both models measured on the same rows.

With a champion, the challenger is judged on the out-of-time rows (the newest labelled traffic, which
neither model trained on) and on the base check set:

- `oot_auc`: its AUC is at least the champion's − `auc_tolerance`;
- `oot_brier`: its Brier score is no worse than the champion's (calibration is what a retention budget
  spends on, and AUC cannot see it);
- `base`: on the base check set its AUC is ≥ the champion's − `base_auc_tolerance`. This guards against
  a challenger that learnt something wrong from a narrow slice of traffic; it judges ranking only and
  with a wide tolerance, because a retrain usually happens since some base outcomes went stale (when a
  segment's churn fell from 55 % to 10 %, a correct challenger loses 0.07 AUC and 0.05 Brier on the old
  labels of the base check set, and up to 0.11 over 30 seeds in docs/scenarios.md);
- `gain`: it is better on the out-of-time rows: AUC by more than `auc_gain`, or Brier by more than
  `brier_tolerance` and by more than `gain_z` standard errors of the paired per-row Brier difference
  (`brier_gain_se`), so a gain within the noise of a few hundred rows does not count. Anything less is a
  tie, and a tie keeps the champion (a version that is no better only churns the registry and restarts
  the cooldown).

Too few out-of-time rows (under `min_oot_rows`, or of one class) to compare: the champion stays. Without
a champion the challenger's base-check AUC must clear `auc_floor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from churnflow.settings import RetrainSettings, section

Metrics = dict[str, float]


@dataclass(frozen=True)
class GatePolicy:
    """The gate's thresholds (see the module docstring); their defaults are `RetrainSettings`'s."""

    auc_floor: float
    auc_tolerance: float
    brier_tolerance: float
    base_auc_tolerance: float
    gain_z: float
    min_oot_rows: int
    auc_gain: float

    @classmethod
    def from_settings(cls, settings: RetrainSettings) -> GatePolicy:
        """The gate of the retrain job's settings."""
        return section(settings, cls)


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger may replace the champion, why, and the verdict of each comparison."""

    promote: bool
    reason: str
    checks: dict[str, bool] = field(default_factory=dict)

    def checks_tag(self) -> str:
        """The comparisons as one tag value, e.g. `oot_auc=pass,oot_brier=fail`."""
        return ",".join(f"{name}={'pass' if ok else 'fail'}" for name, ok in self.checks.items())


def judge_challenger(
    challenger_oot: Metrics,
    champion_oot: Metrics | None,
    challenger_base: Metrics,
    champion_base: Metrics | None,
    policy: GatePolicy,
    brier_gain_se: float = 0.0,
) -> GateDecision:
    """Apply the gate (see the module docstring); the reason carries every number compared."""
    if champion_oot is None or champion_base is None:
        auc = challenger_base["roc_auc"]
        ok = not math.isnan(auc) and auc >= policy.auc_floor
        verdict = "clears" if ok else "does not clear"
        return GateDecision(
            ok, f"no champion; base-check AUC {auc:.4f} {verdict} the floor {policy.auc_floor:.4f}", {"floor": ok}
        )
    rows = int(challenger_oot["rows"])
    if rows < policy.min_oot_rows or math.isnan(challenger_oot["roc_auc"]) or math.isnan(champion_oot["roc_auc"]):
        return GateDecision(
            False,
            f"too few recent labels to judge: {rows} out-of-time rows (the gate needs ≥ {policy.min_oot_rows} "
            "with both outcomes); the champion stays",
            {"enough_recent_labels": False},
        )
    ch_auc, cp_auc = challenger_oot["roc_auc"], champion_oot["roc_auc"]
    ch_brier, cp_brier = challenger_oot["brier"], champion_oot["brier"]
    base_auc, base_cp_auc = challenger_base["roc_auc"], champion_base["roc_auc"]
    brier_bar = max(policy.brier_tolerance, policy.gain_z * brier_gain_se)
    checks = {
        "oot_auc": ch_auc >= cp_auc - policy.auc_tolerance,
        "oot_brier": ch_brier <= cp_brier,
        "base": base_auc >= base_cp_auc - policy.base_auc_tolerance,
        "gain": ch_auc > cp_auc + policy.auc_gain or ch_brier < cp_brier - brier_bar,
    }
    texts = {
        "oot_auc": f"out-of-time AUC {ch_auc:.4f} vs champion {cp_auc:.4f} (tolerance {policy.auc_tolerance:.4f})",
        "oot_brier": f"out-of-time Brier {ch_brier:.4f} vs champion {cp_brier:.4f}",
        "base": f"base-check AUC {base_auc:.4f} vs {base_cp_auc:.4f} (tolerance {policy.base_auc_tolerance:.3f})",
        "gain": f"gain over the champion beyond a tie (AUC > +{policy.auc_gain:.4f} or Brier < −{brier_bar:.4f})",
    }
    on = f"on {rows} out-of-time rows"
    failed = [name for name, ok in checks.items() if not ok]
    if not failed:
        return GateDecision(True, f"promote {on}: " + "; ".join(texts.values()), checks)
    if failed == ["gain"]:
        return GateDecision(False, f"a tie keeps the champion {on}: " + "; ".join(texts.values()), checks)
    worse = "; ".join(f"{name} failed: {texts[name]}" for name in failed if name != "gain")
    return GateDecision(False, f"reject {on}: {worse}", checks)
