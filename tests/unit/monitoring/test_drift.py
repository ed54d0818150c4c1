"""The Evidently adapter: column mapping from the schema, results read by metric type and column name, and
the check's report agreeing with plain Evidently (DataDriftPreset) column by column."""

import random

import pytest
from evidently.metrics import DriftedColumnsCount

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring import drift
from churnflow.sim import scenarios
from churnflow.training.compiler import compile_pipeline


@pytest.fixture(scope="module")
def scorer(training_result):
    return CompiledScorer(compile_pipeline(training_result.model))


@pytest.fixture(scope="module")
def measured(dataset, training_result, scorer):
    reference = drift.with_prediction(training_result.train, scorer)
    current = drift.with_prediction(scenarios.window(dataset, "month_to_month_fibre", 1000, seed=0), scorer)
    return drift.score_columns(reference, current, drift.DriftConfig())


def test_data_definition_comes_from_the_schema():
    definition = drift.data_definition()
    assert definition.numerical_columns == [*schema.NUMERIC_NAMES, "churn_probability"]
    assert definition.categorical_columns == list(schema.CATEGORICAL_NAMES)


def test_prediction_column_is_the_champion_probability(dataset, scorer):
    rows = dataset.head(5)
    frame = drift.with_prediction(rows, scorer)
    assert list(frame.columns) == list(drift.COLUMNS)
    assert frame["churn_probability"].tolist() == pytest.approx(scorer.probabilities(rows.to_dict("records")))


def test_result_has_every_column_with_its_configured_method(measured):
    result, _ = measured
    assert [c.column for c in result.columns] == list(drift.COLUMNS)
    for column in result.columns:
        expected = "jensenshannon" if column.kind == "categorical" else "wasserstein"
        assert (column.method, column.threshold) == (expected, 0.1)
        assert column.drifted == (column.score >= column.threshold)  # distance methods: drift at or above
    assert result.current_rows == 1000 and result.reference_rows == 5634


def test_shift_toward_month_to_month_fibre_moves_the_segment_columns(measured):
    result, _ = measured
    assert result.column("Contract").drifted and result.column("InternetService").drifted
    assert result.column("churn_probability").score > 0.3
    assert not result.column("gender").drifted
    assert result.drifted_features == sum(c.drifted for c in result.features)
    assert result.drift_share == pytest.approx(result.drifted_features / 19)


@pytest.mark.parametrize("scenario", ["in_distribution", "month_to_month_fibre"])
def test_check_report_gives_plain_evidentlys_scores_and_verdicts(dataset, training_result, scorer, scenario):
    reference = drift.with_prediction(training_result.train, scorer)
    current = drift.with_prediction(scenarios.window(dataset, scenario, 2000, seed=1), scorer)
    config = drift.DriftConfig()
    result, snapshot = drift.score_columns(reference, current, config)
    plain = drift.preset_report(reference, current, config).dict()
    rates = {"predicted_churn_rate": None, "reference_churn_rate": None}  # computed beside the report
    assert result.model_copy(update=rates) == drift.parse_snapshot(plain, 2000, 5634)  # every score and verdict
    assert result.predicted_churn_rate == pytest.approx(current["churn_probability"].mean())
    assert result.reference_churn_rate == pytest.approx(reference["churn_probability"].mean())
    (count,) = [m["value"] for m in plain["metrics"] if m["config"]["type"] == DriftedColumnsCount.__get_type__()]
    assert (result.drifted_features, result.drift_share) == (count["count"], count["share"])
    types = [m["config"]["type"] for m in snapshot.dict()["metrics"]]
    assert types == [drift.ValueDriftScore.__get_type__()] * len(drift.COLUMNS)


def test_parsing_ignores_the_order_of_metrics_and_tests(measured):
    result, snapshot = measured
    shuffled = snapshot.dict()
    random.Random(3).shuffle(shuffled["metrics"])
    random.Random(4).shuffle(shuffled["tests"])
    rates = {"predicted_churn_rate": None, "reference_churn_rate": None}
    assert drift.parse_snapshot(shuffled, 1000, 5634) == result.model_copy(update=rates)


def test_parsing_refuses_a_snapshot_without_a_column(measured):
    _, snapshot = measured
    content = snapshot.dict()
    content["metrics"] = [m for m in content["metrics"] if m["config"].get("column") != "tenure"]
    with pytest.raises(ValueError, match="tenure"):
        drift.parse_snapshot(content, 1000, 5634)


def test_snapshot_renders_a_standalone_html_report(measured):
    _, snapshot = measured
    html = snapshot.get_html_str(as_iframe=False)
    assert html.lstrip().lower().startswith("<!doctype html>") and "churn_probability" in html
    result = drift.parse_snapshot(snapshot.dict(), 1000, 5634)
    drifted = sum(c.drifted for c in result.columns)
    assert f"Drift is detected for {drifted} of 20 columns." in html  # one drift table of all the columns
