"""What a retrain trains on and what it is judged on: pure functions over frames and scorers.

Training rows are the recent labelled traffic (older than the out-of-time cut) plus the base training
split, each base row weighted so that all base rows together weigh `base_weight_share` of the recent
rows: where recent traffic exists it dominates, and segments it does not cover keep the base
population's pattern. Without recent rows the base rows weigh 1.

The out-of-time rows are the newest labelled requests, by logged time: the newest `oot_fraction` of
them, and only requests logged after the newest request any earlier version trained on
(`trained_until`), so no evaluation row was ever a training row. The base check set is the base test
split, which no version trains on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.storage import request_log
from churnflow.training import data, pipeline

TIME = request_log.TIMESTAMP
"""The logged-time column of labelled traffic (Unix seconds)."""


@dataclass(frozen=True)
class RetrainData:
    """The rows a retrain trains on (with their weights) and the two sets it is judged on."""

    train: pd.DataFrame
    weights: np.ndarray
    base_weight: float
    base_train_rows: int
    recent_train: pd.DataFrame
    out_of_time: pd.DataFrame
    base_check: pd.DataFrame

    def bounds(self) -> dict[str, float | None]:
        """Logged times of the recent training rows and of the out-of-time rows (None without times)."""

        def edge(frame: pd.DataFrame, pick: str) -> float | None:
            if TIME not in frame.columns or frame.empty:
                return None
            return float(getattr(frame[TIME], pick)())

        return {
            "train_first": edge(self.recent_train, "min"),
            "train_last": edge(self.recent_train, "max"),
            "oot_cut": edge(self.out_of_time, "min"),
            "oot_last": edge(self.out_of_time, "max"),
        }


def out_of_time_split(
    recent: pd.DataFrame, oot_fraction: float, trained_until: float | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(older rows, newest rows): the newest `oot_fraction` of `recent` by logged time, never a row logged
    at or before `trained_until`; requests logged at the same instant fall on the same side of the cut.

    Without a time column the row order (oldest first) stands in for it.
    """
    if recent.empty:
        return recent, recent
    ordered = recent.sort_values(TIME, kind="stable") if TIME in recent.columns else recent
    ordered = ordered.reset_index(drop=True)
    wanted = math.ceil(oot_fraction * len(ordered))
    if TIME not in ordered.columns:
        return ordered.iloc[: len(ordered) - wanted], ordered.iloc[len(ordered) - wanted :]
    times = ordered[TIME].to_numpy(dtype=float)
    cut = times[len(times) - wanted]
    newest = times >= cut
    if trained_until is not None:
        newest &= times > trained_until
    return ordered[~newest].reset_index(drop=True), ordered[newest].reset_index(drop=True)


def base_row_weight(base_rows: int, recent_rows: int, share: float) -> float:
    """Weight of each base row so that the base rows weigh `share` of the recent rows (never above 1)."""
    if not recent_rows or not base_rows:
        return 1.0
    return min(1.0, share * recent_rows / base_rows)


def assemble(
    base: pd.DataFrame,
    recent: pd.DataFrame,
    oot_fraction: float,
    trained_until: float | None,
    base_weight_share: float,
    test_size: float,
    seed: int,
) -> RetrainData:
    """Split base data as at first training and recent traffic by time; weight the training rows."""
    base_train, base_check = pipeline.split(base, test_size, seed)
    recent_train, out_of_time = out_of_time_split(recent, oot_fraction, trained_until)
    weight = base_row_weight(len(base_train), len(recent_train), base_weight_share)
    columns = list(schema.FEATURE_NAMES) + [schema.TARGET]
    train = pd.concat([base_train[columns], recent_train[columns]], ignore_index=True)
    weights = np.concatenate([np.full(len(base_train), weight), np.ones(len(recent_train))])
    return RetrainData(train, weights, weight, len(base_train), recent_train, out_of_time, base_check)


def metrics_of(churned: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, Brier, log loss, accuracy and calibration-in-the-large of probabilities against outcomes
    (NaN AUC with one class, NaN everything without rows)."""
    y = np.asarray(churned, dtype=int)
    p = np.asarray(probability, dtype=float)
    if not len(y):
        names = ("roc_auc", "brier", "log_loss", "accuracy", "mean_probability", "churn_rate")
        return {name: math.nan for name in names} | {"rows": 0.0}
    return {
        "roc_auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else math.nan,
        "brier": float(np.mean((y - p) ** 2)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "accuracy": float(np.mean((p >= threshold) == y)),
        "mean_probability": float(p.mean()),
        "churn_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def paired_brier_se(churned: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> float:
    """Standard error of the mean per-row difference in squared error between two models on the same rows."""
    y = np.asarray(churned, dtype=float)
    if len(y) < 2:
        return math.inf
    difference = (y - challenger) ** 2 - (y - champion) ** 2
    return float(np.std(difference, ddof=1) / math.sqrt(len(y)))


def probabilities(scorer: CompiledScorer, frame: pd.DataFrame) -> np.ndarray:
    """A compiled model's churn probabilities for a frame's customers."""
    return scorer.batch_probabilities({name: frame[name].tolist() for name in schema.FEATURE_NAMES})


def scorer_metrics(scorer: CompiledScorer, frame: pd.DataFrame, threshold: float = 0.5) -> dict[str, float]:
    """`metrics_of` a compiled model on a labelled frame."""
    return metrics_of(data.target(frame).to_numpy(), probabilities(scorer, frame), threshold)
