"""Evaluation artifacts: confusion counts at the decision threshold, and decodable plots."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from churnflow.training import evaluation_plots as plots

Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 0, 1])
PROBA = np.array([0.1, 0.4, 0.6, 0.7, 0.3, 0.9, 0.5, 0.5])


def test_confusion_counts_predict_churn_at_or_above_the_threshold():
    counts = plots.confusion(Y_TRUE, PROBA, 0.5)
    # 0.5 itself is predicted churn, as the predict service does (probability >= threshold)
    assert (counts.true_negative, counts.false_positive, counts.false_negative, counts.true_positive) == (2, 2, 1, 3)
    assert counts.rows == len(Y_TRUE)
    stricter = plots.confusion(Y_TRUE, PROBA, 0.65)
    assert (stricter.false_positive, stricter.true_positive) == (0, 2)


def test_artifacts_are_decodable_pngs_and_the_counts_json():
    artifacts = plots.evaluation_artifacts(Y_TRUE, PROBA, 0.5)
    assert set(artifacts) == {
        plots.ROC_PLOT,
        plots.PR_PLOT,
        plots.CALIBRATION_PLOT,
        plots.CONFUSION_PLOT,
        plots.CONFUSION_JSON,
    }
    for name, content in artifacts.items():
        if name.endswith(".png"):
            with Image.open(io.BytesIO(content)) as image:
                image.verify()
                assert image.format == "PNG" and image.size == (320, 288)
    counts = json.loads(artifacts[plots.CONFUSION_JSON])
    assert counts == {
        "threshold": 0.5,
        "true_negative": 2,
        "false_positive": 2,
        "false_negative": 1,
        "true_positive": 3,
        "rows": 8,
    }


def test_one_class_rows_get_the_confusion_matrix_but_no_curves():
    artifacts = plots.evaluation_artifacts(np.zeros(4, dtype=int), np.array([0.2, 0.7, 0.1, 0.4]), 0.5)
    assert set(artifacts) == {plots.CONFUSION_PLOT, plots.CONFUSION_JSON}
    assert json.loads(artifacts[plots.CONFUSION_JSON])["false_positive"] == 1
