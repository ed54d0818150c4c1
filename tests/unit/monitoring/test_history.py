"""The check history as Evidently Workspace runs: the values each run carries, the dashboard's panels,
and the retention, on a workspace in a temporary directory (the same Evidently storage code as gs://)."""

from datetime import UTC, datetime

import pytest
from evidently.sdk.models import DashboardModel
from evidently.ui.storage.local.base import LocalState

from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring import drift, history, policy
from churnflow.monitoring.models import CheckStatus, CheckSummary, LabelledPerformance, WindowStats
from churnflow.retraining.request_state import RequestOutcome
from churnflow.settings import MonitorSettings
from churnflow.sim import scenarios
from churnflow.training.compiler import compile_pipeline

T0 = datetime(2026, 11, 5, 12, tzinfo=UTC)


def window(rows):
    return WindowStats(
        start=T0,
        end=T0,
        objects=2,
        objects_read=2,
        corrupt_objects=0,
        unnamed_objects=0,
        lines=rows,
        parsed_lines=rows,
        bad_lines=0,
        bad_rows=0,
        valid_rows=rows,
        tested_rows=rows,
        sampled=False,
        design_effect=1.0,
        effective_rows=rows,
        sample_error_bound=0.0,
        model_versions={3: rows},
    )


PERFORMANCE = LabelledPerformance(
    model_version=3, rows=400, churn_rate=0.3, roc_auc=0.81, accuracy=0.77, mean_probability=0.28, brier=0.15,
    lookback_days=30,
)  # fmt: skip


@pytest.fixture(scope="module")
def drifted(dataset, training_result):
    """A real drifted check: Evidently's snapshot and the summary the monitor would write."""
    scorer = CompiledScorer(compile_pipeline(training_result.model))
    reference = drift.with_prediction(training_result.train, scorer)
    current = drift.with_prediction(scenarios.window(dataset, "month_to_month_fibre", 1000, seed=0), scorer)
    result, snapshot = drift.score_columns(reference, current, drift.DriftConfig())
    decision = policy.assess_drift(
        result, scorer.feature_importance(), policy.DriftPolicy.from_settings(MonitorSettings())
    )
    summary = CheckSummary(
        check_id="20261105T120000Z-0123abcd",
        checked_at=T0,
        status=CheckStatus.DRIFT,
        model_name="churn",
        champion_version=3,
        data_fingerprint="f" * 16,
        window=window(1000),
        decision=decision,
        drift=result,
        report_uri="gs://b/reports/checks/20261105T120000Z-0123abcd/report.html",
        summary_uri="gs://b/reports/checks/20261105T120000Z-0123abcd/summary.json",
        trigger=RequestOutcome(action="published", reason="drift"),
        performance=PERFORMANCE,
    )
    return summary, snapshot, current


def values(run, metric_type, label):
    """A run's values of one metric type, by label value."""
    found = {}
    for result in run.metric_results.values():
        params = result.metric_value_location.metric.params
        if params["type"] == metric_type:
            found[params[label]] = result.value
    return found


def test_a_run_carries_the_drift_scores_the_check_values_and_the_rules(drifted):
    summary, snapshot, current = drifted
    run = history.run_model(summary, snapshot)
    assert run.name == summary.check_id and run.timestamp == datetime(2026, 11, 5, 12)  # naive UTC
    assert run.tags == ["drift", "champion-v3"] and run.metadata["trigger"] == "published"
    scores = values(run, history.DRIFT_SCORE, "column")
    assert scores == {c.column: pytest.approx(c.score) for c in summary.drift.columns}
    checks = values(run, history.CHECK_VALUE, "name")
    assert checks["drift_share"] == summary.drift.drift_share
    assert checks["predicted_churn_rate"] == pytest.approx(current["churn_probability"].mean())
    assert checks["reference_churn_rate"] < checks["predicted_churn_rate"]  # the segment churns more
    assert (checks["labelled.roc_auc"], checks["labelled.brier"], checks["labelled.churn_rate"]) == (0.81, 0.15, 0.3)
    assert not any(name.startswith("score.") for name in checks)  # they are the drift scores, by column
    assert set(values(run, history.RULE_FIRED, "rule")) == set(summary.decision.rules_fired)
    assert run.widgets and run.tests_widgets  # the report's drift table and tests, for the run's page
    assert set(run.metric_results) == set(history.check_values(summary))


def test_a_check_with_too_few_rows_records_its_numbers_without_a_report(drifted):
    summary, _, _ = drifted
    small = summary.model_copy(
        update={"status": CheckStatus.INSUFFICIENT_DATA, "drift": None, "decision": None, "window": window(120)}
    )
    run = history.run_model(small, None)
    assert run.tags == ["insufficient_data", "champion-v3"] and run.widgets == []
    assert values(run, history.CHECK_VALUE, "name")["window.valid_rows"] == 120
    assert values(run, history.CHECK_VALUE, "name")["labelled.roc_auc"] == 0.81
    assert values(run, history.DRIFT_SCORE, "column") == {} and values(run, history.RULE_FIRED, "rule") == {}


def test_every_panel_plots_a_value_that_runs_carry(drifted):
    summary, snapshot, _ = drifted
    run = history.run_model(summary, snapshot)
    board = history.dashboard()
    assert {"Drift share over time", "Per-feature drift scores", "Predicted churn rate", "Calibration"} <= {
        panel.title for panel in board.panels
    }
    carried = {
        (r.metric_value_location.metric.params["type"], label, str(value))
        for r in run.metric_results.values()
        for label, value in r.metric_value_location.metric.params.items()
        if label != "type"
    }
    for panel in board.panels:
        for metric in panel.values:
            assert all((metric.metric, k, v) in carried for k, v in metric.metric_labels.items()), panel.title
    assert history.dashboard() == board  # stable ids: rewriting it with every check changes nothing


def test_project_id_is_stable_per_model_and_refuses_unsafe_names():
    assert history.project_id("churn") == history.project_id("churn") != history.project_id("churn-eu")
    with pytest.raises(ValueError):
        history.project_id("../churn")


def test_workspace_keeps_the_newest_runs(tmp_path, drifted):
    summary, snapshot, _ = drifted
    store = history.History(str(tmp_path))
    pid = store.ensure_project("churn")
    added = [store.add(pid, history.run_model(summary, snapshot)) for _ in range(4)]
    assert store.prune(pid, keep=2) == [str(added[0]), str(added[1])]
    assert store.runs(pid) == [str(added[2]), str(added[3])]
    assert store.prune(pid, keep=2) == []

    evidently = LocalState(str(tmp_path))  # what Evidently's UI reads
    assert evidently.read_project(pid).name == "churn"
    assert isinstance(evidently.read_dashboard(pid), DashboardModel) and evidently.read_dashboard(pid).panels
    stored = evidently.read_snapshot(pid, added[3])
    assert values(stored, history.CHECK_VALUE, "name")["drift_share"] == summary.drift.drift_share
    assert store.ensure_project("churn") == pid and evidently.list_projects() == [pid]
