"""Model building and evaluation: pure functions over frames, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churnflow.core import schema
from churnflow.training import data


def build_pipeline(max_iter: int = 1000, random_state: int = 42) -> Pipeline:
    """One-hot + standard scaling + logistic regression, with columns taken from the schema."""
    preprocess = ColumnTransformer(
        [
            ("num", StandardScaler(), list(schema.NUMERIC_NAMES)),
            (
                "cat",
                OneHotEncoder(categories=[list(f.categories) for f in schema.CATEGORICAL], handle_unknown="ignore"),
                list(schema.CATEGORICAL_NAMES),
            ),
        ]
    )
    classifier = LogisticRegression(max_iter=max_iter, random_state=random_state)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def split(frame: pd.DataFrame, test_size: float = 0.2, random_state: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train/test split of a cleaned frame."""
    train, test = train_test_split(frame, test_size=test_size, random_state=random_state, stratify=data.target(frame))
    return train.reset_index(drop=True), test.reset_index(drop=True)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The 19 model inputs of a frame, in schema order."""
    return frame[list(schema.FEATURE_NAMES)]


def fit(
    train: pd.DataFrame, max_iter: int = 1000, random_state: int = 42, sample_weight: np.ndarray | None = None
) -> Pipeline:
    """Fit the pipeline on a cleaned frame with a target (rows weighted by `sample_weight` when given)."""
    model = build_pipeline(max_iter, random_state)
    if sample_weight is None:
        return model.fit(features(train), data.target(train))
    return model.fit(features(train), data.target(train), classifier__sample_weight=sample_weight)


def evaluate(model: Pipeline, frame: pd.DataFrame, threshold: float) -> dict[str, float]:
    """Held-out quality of `model` on a cleaned frame with a target; churn predicted at `proba >= threshold`."""
    y_true = data.target(frame).to_numpy()
    proba = model.predict_proba(features(frame))[:, 1]
    y_pred = (proba >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc": float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) > 1 else float("nan"),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
        "brier_se": float(np.std((y_true - proba) ** 2, ddof=1) / np.sqrt(len(y_true))) if len(y_true) > 1 else 0.0,
        "rows": float(len(y_true)),
        "churn_rate": float(y_true.mean()),
    }


@dataclass(frozen=True)
class TrainingResult:
    """A fitted model with the rows it saw and its held-out metrics."""

    model: Pipeline
    train: pd.DataFrame
    test: pd.DataFrame
    metrics: dict[str, float]

    @property
    def data_fingerprint(self) -> str:
        """Fingerprint of the training rows."""
        return data.fingerprint(self.train)


def train(
    frame: pd.DataFrame, test_size: float = 0.2, random_state: int = 42, max_iter: int = 1000, threshold: float = 0.5
) -> TrainingResult:
    """Split, fit and evaluate (at the decision `threshold`) on a cleaned frame."""
    train_rows, test_rows = split(frame, test_size, random_state)
    model = fit(train_rows, max_iter, random_state)
    return TrainingResult(model, train_rows, test_rows, evaluate(model, test_rows, threshold))
