"""Evaluation artifacts of a training run: ROC, PR and calibration plots and the confusion matrix.

Pure: labels and probabilities in, PNG and JSON bytes out (MLflow logging is `registry.write`'s job).
Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so no
backend or global figure state is involved; they are small (≈20 kB each) to keep training cheap.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ARTIFACT_DIR = "evaluation"
ROC_PLOT = f"{ARTIFACT_DIR}/roc_curve.png"
PR_PLOT = f"{ARTIFACT_DIR}/precision_recall_curve.png"
CALIBRATION_PLOT = f"{ARTIFACT_DIR}/calibration_curve.png"
CONFUSION_PLOT = f"{ARTIFACT_DIR}/confusion_matrix.png"
CONFUSION_JSON = f"{ARTIFACT_DIR}/confusion_matrix.json"
CALIBRATION_BINS = 10
_SIZE = (4.0, 3.6)
_DPI = 80


@dataclass(frozen=True)
class ConfusionCounts:
    """Predictions at the decision threshold against the labels (positive = churned)."""

    threshold: float
    true_negative: int
    false_positive: int
    false_negative: int
    true_positive: int

    @property
    def rows(self) -> int:
        """How many rows were counted."""
        return self.true_negative + self.false_positive + self.false_negative + self.true_positive


def confusion(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> ConfusionCounts:
    """The confusion counts when churn is predicted at `proba >= threshold` (as the predict service does)."""
    actual = np.asarray(y_true).astype(bool)
    predicted = np.asarray(proba) >= threshold
    return ConfusionCounts(
        threshold=threshold,
        true_negative=int(np.sum(~actual & ~predicted)),
        false_positive=int(np.sum(~actual & predicted)),
        false_negative=int(np.sum(actual & ~predicted)),
        true_positive=int(np.sum(actual & predicted)),
    )


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    return figure, axes


def roc_plot(y_true: np.ndarray, proba: np.ndarray) -> bytes:
    """ROC curve with its AUC and the chance diagonal."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, proba)
    figure, axes = _axes(f"ROC (AUC {roc_auc_score(y_true, proba):.3f})", "false positive rate", "true positive rate")
    axes.plot(fpr, tpr, color="#1565c0")
    axes.plot([0, 1], [0, 1], ls="--", color="#999")
    return _png(figure)


def pr_plot(y_true: np.ndarray, proba: np.ndarray) -> bytes:
    """Precision-recall curve with its average precision and the base rate."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y_true, proba)
    title = f"Precision-recall (AP {average_precision_score(y_true, proba):.3f})"
    figure, axes = _axes(title, "recall", "precision")
    axes.plot(recall, precision, color="#1565c0")
    axes.axhline(float(np.mean(y_true)), ls="--", color="#999")
    return _png(figure)


def calibration_plot(y_true: np.ndarray, proba: np.ndarray) -> bytes:
    """Observed churn rate against mean predicted probability, in equal-width probability bins."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y_true, proba, n_bins=CALIBRATION_BINS)
    figure, axes = _axes("Calibration", "mean predicted probability", "observed churn rate")
    axes.plot(predicted, observed, marker="o", color="#1565c0")
    axes.plot([0, 1], [0, 1], ls="--", color="#999")
    return _png(figure)


def confusion_plot(counts: ConfusionCounts) -> bytes:
    """The confusion matrix as an annotated 2×2 grid (rows: actual, columns: predicted)."""
    from matplotlib.figure import Figure

    grid = np.array([[counts.true_negative, counts.false_positive], [counts.false_negative, counts.true_positive]])
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(grid, cmap="Blues")
    for (row, column), value in np.ndenumerate(grid):
        dark = value > grid.max() / 2
        axes.text(column, row, str(value), ha="center", va="center", color="white" if dark else "black")
    labels = ["stays", "churns"]
    axes.set(
        title=f"Confusion matrix at threshold {counts.threshold:g}",
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="actual",
    )
    return _png(figure)


def evaluation_artifacts(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, bytes]:
    """Every evaluation artifact by its path in the run; the curves need both classes in `y_true`."""
    counts = confusion(y_true, proba, threshold)
    artifacts = {
        CONFUSION_JSON: json.dumps({**asdict(counts), "rows": counts.rows}, indent=2).encode(),
        CONFUSION_PLOT: confusion_plot(counts),
    }
    if len(np.unique(y_true)) == 2:
        artifacts[ROC_PLOT] = roc_plot(y_true, proba)
        artifacts[PR_PLOT] = pr_plot(y_true, proba)
        artifacts[CALIBRATION_PLOT] = calibration_plot(y_true, proba)
    return artifacts
