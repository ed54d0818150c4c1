"""Challenger versus champion on one evaluation set: pure functions over frames and scorers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.training import data, pipeline


@dataclass(frozen=True)
class RetrainData:
    """The rows a retrain trains on and evaluates on."""

    train: pd.DataFrame
    evaluation: pd.DataFrame
    recent_train: pd.DataFrame
    recent_holdout: pd.DataFrame


def assemble(
    base: pd.DataFrame, recent: pd.DataFrame, holdout_fraction: float, test_size: float, seed: int
) -> RetrainData:
    """Base data split as at first training, plus labelled recent traffic split into train and held-out rows.

    The evaluation set is the base test split plus the recent held-out rows, so the gate judges both
    the old population and the new traffic.
    """
    base_train, base_test = pipeline.split(base, test_size, seed)
    if len(recent) >= 10 and data.target(recent).nunique() == 2:
        recent_train, recent_holdout = pipeline.split(recent, holdout_fraction, seed)
    else:
        recent_train, recent_holdout = recent, recent.iloc[0:0]
    train = pd.concat([base_train, recent_train], ignore_index=True)
    evaluation = pd.concat([base_test, recent_holdout], ignore_index=True)
    return RetrainData(train, evaluation, recent_train, recent_holdout)


def scorer_metrics(scorer: CompiledScorer, frame: pd.DataFrame, threshold: float = 0.5) -> dict[str, float]:
    """AUC and accuracy of a compiled model on a labelled frame (NaN AUC with one class or no rows)."""
    if frame.empty:
        return {"roc_auc": float("nan"), "accuracy": float("nan"), "rows": 0.0}
    y_true = data.target(frame).to_numpy()
    proba = scorer.batch_probabilities({name: frame[name].tolist() for name in schema.FEATURE_NAMES})
    auc = float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) == 2 else float("nan")
    return {"roc_auc": auc, "accuracy": float(accuracy_score(y_true, proba >= threshold)), "rows": float(len(frame))}
