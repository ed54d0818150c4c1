"""The drift policy: pure rules over Evidently's per-column results and the champion's feature weights.

Four rules; the window has drifted when any fires, and the decision names each one that did:
- `share`: Evidently's default dataset rule, the share of drifted feature columns ≥ `drift_share`.
- `importance`: the drifted features together carry ≥ `importance_share` of the champion's feature
  importance (how far each feature moves its log-odds), so a shift confined to a few heavy features
  (the charges, tenure) is drift, and a shift in features the model barely uses (gender) weighs little.
- `feature`: any one feature the champion uses (≥ `feature_share` of its importance) drifted beyond
  its threshold and the noise floor. How the weight is spread over correlated features (tenure, the
  two charges) depends on how the champion happened to fit: one fit puts 0.04 on MonthlyCharges,
  another 0.15. This rule does not weigh, so a price change is drift whatever the fit.
- `prediction`: the champion's predicted churn probability itself moved by ≥ `prediction_threshold`.

The model-aware rules ignore scores below a noise floor, `noise_factor·√(1/n + 1/m)` for n window and
m reference rows: distance scores of small windows fluctuate by about √(1/n + 1/m) with no real shift
(at n = 300 a normed Wasserstein distance over 0.1 happens in about one window in ten), and the
floor keeps those from firing rules that single columns can fire. For large windows it is below
Evidently's own thresholds and changes nothing.

Persistence: a rule whose statistic clears its bar by less than `persistence_margin` (relative; for
`importance`: unless the columns that clear their own bars by the margin carry the weight alone) fires
only if it was over its bar in the previous decided check of the same champion too (`previous_over_bar`,
kept in the report index in GCS); a shift sitting on a threshold then no longer flips the decision from
window to window, and a clear shift fires at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from churnflow.monitoring.models import DriftDecision, DriftResult, Rule
from churnflow.settings import MonitorSettings, section


@dataclass(frozen=True)
class DriftPolicy:
    """The policy's thresholds (see the module docstring); their defaults are `MonitorSettings`'s."""

    drift_share: float
    importance_share: float
    prediction_threshold: float
    noise_factor: float
    feature_share: float
    persistence_margin: float

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> DriftPolicy:
        """The drift policy of the monitor's settings."""
        return section(settings, cls)


def noise_floor(current_rows: int, reference_rows: int, factor: float) -> float:
    """Scores below this are within the sampling noise of windows of these sizes."""
    return factor * math.sqrt(1 / max(current_rows, 1) + 1 / max(reference_rows, 1))


def importance_shares(importance: Mapping[str, float]) -> dict[str, float]:
    """Each feature's share of the total importance (shares sum to 1)."""
    total = sum(importance.values())
    return {name: value / total for name, value in importance.items()} if total > 0 else {}


def assess_drift(
    result: DriftResult,
    importance: Mapping[str, float],
    policy: DriftPolicy,
    previous_over_bar: frozenset[Rule] = frozenset(),
) -> DriftDecision:
    """Apply the four rules to a drift result; `importance` is CompiledScorer.feature_importance()."""
    floor = noise_floor(result.current_rows, result.reference_rows, policy.noise_factor)
    clear = 1 + policy.persistence_margin
    shares = importance_shares(importance)
    counted = tuple(c.column for c in result.features if c.drifted and c.score >= floor)
    weight = sum(shares.get(name, 0.0) for name in counted)
    # the weight of the columns that clear their own bar by the margin: what fires `importance` at once
    clear_weight = sum(shares.get(c.column, 0.0) for c in result.features if c.score >= clear * max(c.threshold, floor))
    used = [c for c in result.features if shares.get(c.column, 0.0) >= policy.feature_share]
    strongest = max(used, key=lambda c: c.score / max(c.threshold, floor), default=None)
    feature_ratio = strongest.score / max(strongest.threshold, floor) if strongest else 0.0
    prediction = next(c for c in result.columns if c.kind == "prediction")
    prediction_bar = max(policy.prediction_threshold, floor)
    # each rule: over its bar, over it by the persistence margin, and what it compared
    checks = {
        Rule.SHARE: (
            result.drift_share >= policy.drift_share,
            result.drift_share >= clear * policy.drift_share,
            f"{result.drifted_features} of {len(result.features)} features drifted "
            f"(share {result.drift_share:.2f}, rule ≥ {policy.drift_share:.2f})",
        ),
        Rule.IMPORTANCE: (
            weight >= policy.importance_share,
            clear_weight >= policy.importance_share,
            f"drifted features {', '.join(counted) or 'none'} carry {weight:.2f} of the champion's "
            f"importance (rule ≥ {policy.importance_share:.2f})",
        ),
        Rule.FEATURE: (
            feature_ratio >= 1,
            feature_ratio >= clear,
            "strongest shift in a feature the champion uses: "
            + (
                f"{strongest.column} {strongest.score:.3f} (share {shares[strongest.column]:.2f}; rule ≥ "
                f"{max(strongest.threshold, floor):.3f})"
                if strongest
                else "none"
            ),
        ),
        Rule.PREDICTION: (
            prediction.score >= prediction_bar,
            prediction.score >= clear * prediction_bar,
            f"predicted churn probability drift {prediction.score:.3f} (rule ≥ {prediction_bar:.3f})",
        ),
    }
    over = tuple(rule for rule, (hit, _, _) in checks.items() if hit)
    fired = tuple(rule for rule in over if checks[rule][1] or rule in previous_over_bar)
    held = tuple(rule for rule in over if rule not in fired)
    if fired:
        reason = "; ".join(f"{rule}: {checks[rule][2]}" for rule in fired)
    else:
        reason = "no rule fired: " + "; ".join(f"{rule}: {text}" for rule, (_, _, text) in checks.items())
    if held:
        reason += (
            f" (held for persistence, over the bar by < {policy.persistence_margin:.0%} and not over it in the "
            f"previous check: {', '.join(held)})"
        )
    return DriftDecision(
        drifted=bool(fired),
        rules_fired=fired,
        reason=reason,
        rules_over_bar=over,
        rules_held=held,
        noise_floor=floor,
        importance_drift_share=weight,
        prediction_score=prediction.score,
        counted_columns=counted,
    )
