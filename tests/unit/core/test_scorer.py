"""The compiled scorer is what /predict serves: it must equal sklearn's predict_proba."""

import json

import numpy as np
import pytest

from churnflow.core import schema
from churnflow.core.scorer import FORMAT, CompiledScorer, InvalidScorerArtifact
from churnflow.training import compiler, pipeline


@pytest.fixture(scope="module")
def scorer(training_result):
    artifact = json.loads(json.dumps(compiler.compile_pipeline(training_result.model)))
    return CompiledScorer(artifact)


def test_scorer_equals_sklearn_on_every_row(scorer, training_result, dataset):
    rows = pipeline.features(dataset).to_dict("records")
    expected = training_result.model.predict_proba(pipeline.features(dataset))[:, 1]
    got = np.array(scorer.probabilities(rows))
    assert len(got) == 7043
    assert np.max(np.abs(got - expected)) < 1e-9


def test_explained_shares_add_up_to_the_log_odds(scorer, dataset):
    row = pipeline.features(dataset).iloc[10].to_dict()
    _, shares = scorer.explain(row)
    assert {feature for feature, _, _ in shares} == set(schema.FEATURE_NAMES)
    assert scorer.intercept + sum(share for *_, share in shares) == pytest.approx(scorer.log_odds(row), abs=1e-12)
    assert [abs(share) for *_, share in shares] == sorted((abs(share) for *_, share in shares), reverse=True)
    assert len(scorer.explain(row, top=3)[1]) == 3


def test_extreme_inputs_do_not_overflow(scorer):
    row = dict(schema.EXAMPLE_CUSTOMER, tenure=120, MonthlyCharges=1000.0, TotalCharges=100000.0)
    assert 0.0 <= scorer.probability(row) <= 1.0


def test_feature_importance_ranks_contract_above_gender(scorer):
    importance = scorer.feature_importance()
    assert set(importance) == set(schema.FEATURE_NAMES)
    assert importance["Contract"] > 10 * importance["gender"]


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"format": "other/v1"},
        {"format": FORMAT, "intercept": 0.0, "numeric": [], "categorical": []},
        {"format": FORMAT, "intercept": "x", "numeric": [], "categorical": []},
    ],
)
def test_invalid_artifacts_are_refused(broken):
    with pytest.raises(InvalidScorerArtifact):
        CompiledScorer(broken)


def test_batch_path_equals_sklearn_and_the_row_path(scorer, training_result, dataset):
    frame = pipeline.features(dataset)
    columns = {name: frame[name].tolist() for name in schema.FEATURE_NAMES}
    expected = training_result.model.predict_proba(frame)[:, 1]
    got = scorer.batch_probabilities(columns)
    assert got.shape == (7043,)
    assert np.max(np.abs(got - expected)) < 1e-9
    rows = frame.to_dict("records")
    assert scorer.batch_log_odds(columns).tolist() == [scorer.log_odds(row) for row in rows]


def test_explain_agrees_with_log_odds_to_the_bit(scorer, dataset):
    for row in pipeline.features(dataset).head(50).to_dict("records"):
        log_odds, top = scorer.explain(row, 3)
        assert log_odds == scorer.log_odds(row)
        assert top == scorer.explain(row)[1][:3]
