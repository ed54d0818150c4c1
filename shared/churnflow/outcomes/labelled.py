"""The label-using reads of the monitor and the retrain, each one query of `queries` over the labelled examples."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from churnflow.outcomes import queries
from churnflow.outcomes.engine import Engine

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class SegmentCounts:
    """Sums over the labelled requests of one segment: a level of a categorical feature, or a probability bin."""

    feature: str
    level: str
    n: int
    positives: int
    sum_probability: float
    sum_variance: float
    """Σ p(1 − p): the variance of `positives` if the probabilities were right."""


@dataclass(frozen=True)
class PerformanceCounts:
    """Sums over the labelled requests of a window, from which every labelled metric follows exactly."""

    n: int
    positives: int
    correct: int
    sum_probability: float
    sum_squared_error: float
    positive_rank_sum_x2: int
    unreadable_rows: int
    """Rows of the window that could not be read: 0, the labelled examples are typed Parquet (a label import
    counts the unreadable log lines it met)."""
    skipped_objects: int
    sum_fourth_power_error: float = 0.0
    """Σ (y − p)⁴: with sum_squared_error, the variance of the per-request squared error."""
    reliability_sum: float = 0.0
    """Spiegelhalter's Σ (y − p)(1 − 2p): about 0 when the probabilities are right."""
    reliability_variance: float = 0.0
    """Σ (1 − 2p)² p(1 − p): its variance when they are."""
    segments: tuple[SegmentCounts, ...] = ()
    """The same sums per segment (`queries.performance`), for the segment calibration test."""

    @property
    def roc_auc(self) -> float | None:
        """ROC AUC (Mann-Whitney U, ties at their average rank); None with a single class."""
        negatives = self.n - self.positives
        if not self.positives or not negatives:
            return None
        return (self.positive_rank_sum_x2 - self.positives * (self.positives + 1)) / (2 * self.positives * negatives)


def performance(engine: Engine, model_version: int, start: date, until: date) -> PerformanceCounts:
    """Counts of `model_version`'s labelled requests logged from day `start` to day `until`."""
    rows = engine.run(queries.performance(model_version, start, until)).to_pylist()
    return counts_of_rows(rows, len(engine.skipped_objects))


def counts_of_rows(rows: list[dict[str, Any]], skipped_objects: int) -> PerformanceCounts:
    """The counts of the performance query's rows: the overall one (`feature` NULL), then the segments."""
    [row] = [r for r in rows if r["feature"] is None]
    segments = tuple(
        SegmentCounts(
            r["feature"], r["level"], int(r["n"]), int(r["positives"]), float(r["sum_p"]), float(r["sum_variance"])
        )
        for r in rows
        if r["feature"] is not None
    )
    return PerformanceCounts(
        n=int(row["n"]),
        positives=int(row["positives"]),
        correct=int(row["correct"]),
        sum_probability=float(row["sum_p"]),
        sum_squared_error=float(row["sum_squared_error"]),
        positive_rank_sum_x2=int(row["positive_rank_sum_x2"]),
        unreadable_rows=0,
        skipped_objects=skipped_objects,
        sum_fourth_power_error=float(row["sum_fourth_power_error"]),
        reliability_sum=float(row["reliability_sum"]),
        reliability_variance=float(row["reliability_variance"]),
        segments=segments,
    )


def recent_labelled(engine: Engine, since: datetime, until: date, max_rows: int) -> pa.Table:
    """The newest `max_rows` labelled requests logged since `since`, oldest first: id (as customerID), the 19
    features, Churn, then `ts` (logged time, epoch seconds) and `model_version` (the model that answered)."""
    return engine.run(queries.recent_labelled(since, until, max_rows))
