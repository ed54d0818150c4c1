"""The performance rule: is the champion worse on labelled requests than it was expected to be? (pure)

The expectation is the champion's own held-out metrics at registration (`metric.roc_auc`,
`metric.brier` version tags). Each test compares a confidence bound, at `confidence` one-sided and at
the number of labels, with the expectation minus a margin, so that the label noise of a normal window
does not fire it. The expectation was itself measured on a finite held-out set (`metric.rows`): where
its size is known, its standard error joins the window's (the two are independent).

- `labelled_auc`: AUC + z·SE < expected AUC − `auc_margin`, with SE from Hanley & McNeil (1982) at the
  window's (and the held-out set's) numbers of churners and non-churners.
- `labelled_calibration`: |mean predicted − observed churn| > `calibration_margin` + z·√(p̄(1−p̄)/n):
  under a calibrated model the observed rate is a mean of Bernoulli(p_i) with variance
  Σp_i(1−p_i)/n² ≤ p̄(1−p̄)/n (concavity), so the bound holds whatever the spread of the p_i.
- `labelled_brier`: Brier − z·SE > expected Brier + `brier_margin`, SE² = Var(squared error)/n plus the
  expected Brier's SE² (`metric.brier_se`). Without those sums, the bound uses that each squared error
  lies in [0, 1], so its variance is at most its mean, the Brier score.

Two more tests need no expectation at all, only the champion's own logged probabilities on the same
labelled requests, so their error is the window's alone; a covariate shift whose outcomes follow the
champion's probabilities does not move them:

- `labelled_segment_calibration`: for each level of each categorical feature of the schema and each
  probability bin with at least `segment_min_rows` labelled requests, |observed − mean predicted churn|
  > `segment_margin` + z_K·√Σp(1−p)/n, where z_K is the two-sided quantile at `confidence` with a
  Bonferroni correction for the K segments tested. A change in one segment's churn, or noise in its
  labels, shows there long before it moves the overall mean.
- `labelled_reliability`: Spiegelhalter's statistic, |Σ(y − p)(1 − 2p)| / n > `reliability_margin` +
  Bernstein's two-sided bound at `confidence` for its variance Σ(1 − 2p)²p(1 − p) (each term lies in
  [−1, 1]): outcomes less (or more) predictable than the probabilities say, e.g. label noise pulling
  every outcome towards 50 %. Not the normal bound: the rare churner of a probability near 0 gives the
  statistic a heavy tail (an in-distribution window of 1000 requests reached z = 5.2).

Fewer than `min_labels` labelled requests decide nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from churnflow.core import schema
from churnflow.monitoring.models import (
    ExpectedQuality,
    LabelledPerformance,
    PerformanceDecision,
    PerformanceRule,
    SegmentCalibration,
)
from churnflow.outcomes.labelled import PerformanceCounts, SegmentCounts
from churnflow.outcomes.queries import CALIBRATION_BINS, PROBABILITY_BIN
from churnflow.settings import MonitorSettings, section


@dataclass(frozen=True)
class PerformancePolicy:
    """The rule's thresholds (see the module docstring); their defaults are `MonitorSettings`'s."""

    min_labels: int
    confidence: float
    auc_margin: float
    calibration_margin: float
    brier_margin: float
    segment_margin: float
    segment_min_rows: int
    reliability_margin: float

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> PerformancePolicy:
        """The performance policy of the monitor's settings."""
        return section(settings, cls, "performance_")

    @property
    def z(self) -> float:
        """The one-sided normal quantile of `confidence`."""
        return NormalDist().inv_cdf(self.confidence)

    def two_sided_z(self, tests: int = 1) -> float:
        """The two-sided normal quantile of `confidence`, Bonferroni-corrected for `tests` tests."""
        return NormalDist().inv_cdf(1 - (1 - self.confidence) / (2 * tests))


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley–McNeil standard error of an ROC AUC measured on `positives` and `negatives` rows."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def bernstein_bound(standard_error: float, rows: int, confidence: float) -> float:
    """The two-sided Bernstein bound at `confidence` on the mean of `rows` centred terms in [−1, 1] whose mean
    has this standard error: valid whatever their distribution (the normal bound is not, for the rare
    surprising outcome of a probability near 0 or 1)."""
    log_term = math.log(2 / (1 - confidence))
    variance_sum = (standard_error * rows) ** 2
    return (log_term / 3 + math.sqrt((log_term / 3) ** 2 + 2 * variance_sum * log_term)) / rows


def assess_performance(
    known: LabelledPerformance, expected: ExpectedQuality, policy: PerformancePolicy
) -> PerformanceDecision:
    """Apply the five tests to the champion's labelled performance."""
    z = policy.z
    if known.rows < policy.min_labels:
        reason = f"{known.rows} labelled requests, fewer than the {policy.min_labels} the performance rule needs"
        return PerformanceDecision(decided=False, degraded=False, rules_fired=(), reason=reason, labels=known.rows, z=z)
    checks: dict[PerformanceRule, tuple[bool, str]] = {}
    auc_bound = brier_bound = None
    if known.roc_auc is not None and expected.roc_auc is not None:
        positives = round(known.churn_rate * known.rows)
        variance = auc_standard_error(known.roc_auc, positives, known.rows - positives) ** 2
        if expected.rows and expected.churn_rate:
            held_out = round(expected.churn_rate * expected.rows)
            if 0 < held_out < expected.rows:
                variance += auc_standard_error(expected.roc_auc, held_out, expected.rows - held_out) ** 2
        auc_bound = known.roc_auc + z * math.sqrt(variance)
        bar = expected.roc_auc - policy.auc_margin
        checks[PerformanceRule.AUC] = (
            auc_bound < bar,
            f"labelled AUC {known.roc_auc:.3f} (upper bound {auc_bound:.3f}) vs expected "
            f"{expected.roc_auc:.3f} − margin {policy.auc_margin:.3f} = {bar:.3f}",
        )
    gap = calibration_bound = None
    if known.mean_probability is not None:
        mean = known.mean_probability
        gap = mean - known.churn_rate
        calibration_bound = policy.calibration_margin + z * math.sqrt(mean * (1 - mean) / known.rows)
        checks[PerformanceRule.CALIBRATION] = (
            abs(gap) > calibration_bound,
            f"mean predicted churn {mean:.3f} vs observed {known.churn_rate:.3f} (gap {gap:+.3f}, "
            f"bound ±{calibration_bound:.3f})",
        )
    if known.brier is not None and expected.brier is not None:
        spread = known.brier_variance if known.brier_variance is not None else known.brier
        variance = spread / known.rows
        if expected.brier_se is not None:
            variance += expected.brier_se**2
        elif expected.rows:
            variance += expected.brier / expected.rows
        brier_bound = known.brier - z * math.sqrt(variance)
        bar = expected.brier + policy.brier_margin
        checks[PerformanceRule.BRIER] = (
            brier_bound > bar,
            f"labelled Brier {known.brier:.4f} (lower bound {brier_bound:.4f}) vs expected "
            f"{expected.brier:.4f} + margin {policy.brier_margin:.4f} = {bar:.4f}",
        )
    segments = _segment_calibration(known, policy)
    if segments.check is not None:
        checks[PerformanceRule.SEGMENT] = segments.check
    reliability_bound = None
    if known.reliability_gap is not None and known.reliability_se is not None:
        reliability_bound = policy.reliability_margin + bernstein_bound(
            known.reliability_se, known.rows, policy.confidence
        )
        checks[PerformanceRule.RELIABILITY] = (
            abs(known.reliability_gap) > reliability_bound,
            f"Spiegelhalter's Σ(y−p)(1−2p)/n {known.reliability_gap:+.4f} (bound ±{reliability_bound:.4f}, "
            f"z {known.reliability_gap / known.reliability_se:+.2f})",
        )
    fired = tuple(rule for rule, (hit, _) in checks.items() if hit)
    where = f"on {known.rows} labelled requests at {policy.confidence:.1%} confidence"
    if fired:
        reason = f"{where}: " + "; ".join(f"{rule}: {checks[rule][1]}" for rule in fired)
    else:
        reason = f"no performance rule fired {where}: " + "; ".join(
            f"{rule}: {text}" for rule, (_, text) in checks.items()
        )
    return PerformanceDecision(
        decided=bool(checks),
        degraded=bool(fired),
        rules_fired=fired,
        reason=reason,
        labels=known.rows,
        z=z,
        expected_auc=expected.roc_auc,
        auc_upper_bound=auc_bound,
        calibration_gap=gap,
        calibration_bound=calibration_bound,
        expected_brier=expected.brier,
        brier_lower_bound=brier_bound,
        segments_tested=segments.tested,
        segment_z=segments.z,
        worst_segment=segments.worst.name if segments.worst else None,
        segment_gap=segments.worst.gap if segments.worst else None,
        segment_bound=segments.bound,
        reliability_gap=known.reliability_gap,
        reliability_bound=reliability_bound,
    )


@dataclass(frozen=True)
class _SegmentTest:
    """The segment calibration test's verdict: (fired, text), or None with no segment large enough."""

    check: tuple[bool, str] | None = None
    tested: int = 0
    z: float | None = None
    worst: SegmentCalibration | None = None
    bound: float | None = None


def _segment_calibration(known: LabelledPerformance, policy: PerformancePolicy) -> _SegmentTest:
    """The segment furthest from calibration beyond its noise and the margin, among those large enough."""
    tested = [s for s in known.segments if s.rows >= policy.segment_min_rows]
    if not tested:
        return _SegmentTest()
    z = policy.two_sided_z(len(tested))

    worst = max(tested, key=lambda segment: segment.beyond_noise(z))
    bound = policy.segment_margin + z * worst.standard_error
    text = (
        f"{worst.name}: mean predicted churn {worst.predicted_rate:.3f} vs observed {worst.observed_rate:.3f} "
        f"on {worst.rows} requests (gap {worst.gap:+.3f}, bound "
        f"±{bound:.3f}; the worst of {len(tested)} segments, z {z:.2f})"
    )
    return _SegmentTest((worst.beyond_noise(z) > policy.segment_margin, text), len(tested), z, worst, bound)


def counts_of(
    churned: np.ndarray, probability: np.ndarray, features: pd.DataFrame | None = None, threshold: float = 0.5
) -> PerformanceCounts:
    """The sums the engine's performance query returns, computed in memory (benchmarks and model tests);
    the per-segment sums only when the requests' `features` are given."""
    y = np.asarray(churned, dtype=int)
    p = np.asarray(probability, dtype=float)
    _, inverse, tied = np.unique(p, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(tied)[:-1]])
    ranks_x2 = 2 * below[inverse] + tied[inverse] + 1  # twice the average rank of each row's tie group
    return PerformanceCounts(
        n=len(y),
        positives=int(y.sum()),
        correct=int(((p >= threshold).astype(int) == y).sum()),
        sum_probability=float(p.sum()),
        sum_squared_error=float(((y - p) ** 2).sum()),
        positive_rank_sum_x2=int(ranks_x2[y == 1].sum()),
        unreadable_rows=0,
        skipped_objects=0,
        sum_fourth_power_error=float(((y - p) ** 4).sum()),
        reliability_sum=float(((y - p) * (1 - 2 * p)).sum()),
        reliability_variance=float(((1 - 2 * p) ** 2 * p * (1 - p)).sum()),
        segments=() if features is None else _segment_counts(y, p, features),
    )


def _segment_counts(y: np.ndarray, p: np.ndarray, features: pd.DataFrame) -> tuple[SegmentCounts, ...]:
    bins = np.minimum(np.floor(p * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    columns = {name: features[name].astype(str).to_numpy() for name in schema.CATEGORICAL_NAMES}
    columns[PROBABILITY_BIN] = bins.astype(str)
    segments = []
    for feature, values in columns.items():
        for level in np.unique(values):
            inside = values == level
            q = p[inside]
            segments.append(
                SegmentCounts(
                    str(feature),
                    str(level),
                    int(inside.sum()),
                    int(y[inside].sum()),
                    float(q.sum()),
                    float((q * (1 - q)).sum()),
                )
            )
    return tuple(segments)
