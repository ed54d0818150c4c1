"""Model tests: the quality bar on held-out rows and directional behaviour."""

import pandas as pd
import pytest

from churnflow.core import schema
from churnflow.training import pipeline


def test_held_out_quality_bar(training_result):
    assert training_result.metrics["accuracy"] >= 0.80
    assert training_result.metrics["roc_auc"] >= 0.84
    assert 0 < training_result.metrics["brier"] < 0.15


def test_split_is_stratified_and_disjoint(training_result):
    train, test = training_result.train, training_result.test
    assert len(test) == pytest.approx(0.2 * 7043, abs=1)
    assert abs((train.Churn == "Yes").mean() - (test.Churn == "Yes").mean()) < 0.005
    assert set(train[schema.ID_COLUMN]).isdisjoint(test[schema.ID_COLUMN])


def churn_risk(model, **changes):
    row = pd.DataFrame([{**schema.EXAMPLE_CUSTOMER, **changes}])
    return model.predict_proba(pipeline.features(row))[0, 1]


@pytest.mark.parametrize(
    ("feature", "riskier", "safer"),
    [
        ("Contract", "Month-to-month", "Two year"),
        ("Contract", "Month-to-month", "One year"),
        ("tenure", 2, 60),
        ("OnlineSecurity", "No", "Yes"),
        ("TechSupport", "No", "Yes"),
    ],
)
def test_directional_expectations(training_result, feature, riskier, safer):
    changes = {"InternetService": "Fiber optic", "MultipleLines": "No", "PhoneService": "Yes"}
    model = training_result.model
    assert churn_risk(model, **changes, **{feature: riskier}) > churn_risk(model, **changes, **{feature: safer})


def test_training_is_deterministic(dataset, training_result):
    again = pipeline.train(dataset)
    assert again.metrics == training_result.metrics
    assert again.data_fingerprint == training_result.data_fingerprint
