"""Drift and performance history: every check becomes a run of a project in an Evidently Workspace.

The workspace is Evidently's own layout (per project: metadata, dashboard, one JSON file per run) under
gs://<bucket>/evidently/ (storage.layout), written through Evidently's `LocalState` on fsspec (gcsfs)
and read by Evidently's UI (`churnflow.monitoring.dashboard`). A run holds the widgets of the check's
Evidently report (the drift table, each column's test), shown on the run's page, and the check's
numbers as custom single values, named as the MLflow metrics (`tracking.summary_metrics`: drift share, per-column drift
scores, predicted churn rate, labelled AUC and calibration, rows) and a value per rule fired; its
tags are the verdict and the champion version. A check with too few rows still records its numbers
(e.g. the labelled AUC).

The project id is derived from the model name, so concurrent checks never create two projects; the
dashboard is written with every run (this module is its one source). Retention: the newest
`history_size` runs are kept and older ones deleted on each write, so the bucket and the UI (which
holds every run in memory) stay bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import uuid
from datetime import UTC
from typing import Any

import fsspec
from evidently.core.metric_types import MetricConfig, MetricValueLocation, SingleValue
from evidently.core.report import Snapshot
from evidently.core.serialization import ReportModel, SnapshotModel
from evidently.legacy.core import new_id
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, PanelMetric, ProjectModel
from evidently.ui.storage.local.base import SNAPSHOTS_DIR_NAME, LocalState

from churnflow.monitoring.drift import COLUMNS
from churnflow.monitoring.models import CheckSummary
from churnflow.monitoring.tracking import summary_metrics
from churnflow.settings import MonitorSettings
from churnflow.storage import layout

log = logging.getLogger(__name__)

# Metric types of the custom values; Evidently's dashboard selects series by type and labels, and only
# types under its own `evidently:metric_v2:` prefix (PanelMetric adds it to any other name).
CHECK_VALUE = "evidently:metric_v2:ChurnflowCheckValue"  # a check's own number; label `name`
DRIFT_SCORE = "evidently:metric_v2:ChurnflowDriftScore"  # a column's drift score; label `column`
RULE_FIRED = "evidently:metric_v2:ChurnflowRuleFired"  # 1 per rule that fired; label `rule`
_NAMESPACE = uuid.UUID("6f1c0a52-8d0e-4d2b-9a57-3f0f2c1b7e11")
_SCORE_PREFIX = "score."


def project_id(model_name: str) -> uuid.UUID:
    """The workspace project of a model: the same id for every check, whichever creates it."""
    return uuid.uuid5(_NAMESPACE, f"churnflow/{layout.token(model_name)}")


def _value(metric_type: str, label: str, name: str, value: float) -> tuple[str, SingleValue]:
    """A custom value as a metric of type `metric_type` labelled `label=name`, with its metric id."""
    metric_id = f"{metric_type}:{name}"
    config = MetricConfig(metric_id=metric_id, params={"type": metric_type, label: name})
    return metric_id, SingleValue(display_name=name, value=value, metric_value_location=MetricValueLocation(config, {}))


def check_values(summary: CheckSummary) -> dict[str, SingleValue]:
    """The check's numbers and fired rules as Evidently single values, by metric id."""
    values = [
        _value(DRIFT_SCORE, "column", name.removeprefix(_SCORE_PREFIX), value)
        if name.startswith(_SCORE_PREFIX)
        else _value(CHECK_VALUE, "name", name, value)
        for name, value in summary_metrics(summary).items()
    ]
    rules = summary.retrain_rules
    values += [_value(RULE_FIRED, "rule", str(rule), 1.0) for rule in rules]
    return dict(values)


def run_model(summary: CheckSummary, snapshot: Snapshot | None) -> SnapshotModel:
    """The workspace run of a check: the widgets of its Evidently report (if the window was tested), its values.

    The report's own metric results are left out: the values carry the same drift scores, and the UI
    holds every run in memory (about 0.2 MB a run with them, half without).
    """
    model = snapshot.to_snapshot_model() if snapshot is not None else None
    return SnapshotModel(
        report=ReportModel(items=[]),
        name=summary.check_id,
        timestamp=summary.checked_at.astimezone(UTC).replace(tzinfo=None),  # Evidently's times are naive UTC
        metadata={
            "check_id": summary.check_id,
            "model": f"{summary.model_name}/{summary.champion_version}",
            "trigger": summary.trigger.action,
            "report_uri": summary.report_uri or "",
        },
        tags=[str(summary.status), f"champion-v{summary.champion_version}"],
        metric_results=check_values(summary),
        top_level_metrics=[],
        widgets=model.widgets if model else [],
        tests_widgets=model.tests_widgets if model else [],
    )


def _metric(legend: str, metric: str, **labels: str) -> PanelMetric:
    return PanelMetric(legend=legend, metric=metric, metric_labels=labels)


def _check(legend: str, name: str) -> PanelMetric:
    return _metric(legend, CHECK_VALUE, name=name)


def _panel(
    title: str, subtitle: str, kind: str, values: list[PanelMetric], size: str = "half", **params: Any
) -> DashboardPanelPlot:
    return DashboardPanelPlot(
        id=uuid.uuid5(_NAMESPACE, title),  # stable ids: rewriting the dashboard keeps each panel
        title=title,
        subtitle=subtitle,
        size=size,
        values=values,
        plot_params={"plot_type": kind, **params},
    )


def dashboard() -> DashboardModel:
    """The project's dashboard: drift checks and the latest AUC, then drift and performance over time."""
    return DashboardModel(
        tabs=[],
        panels=[
            _panel(  # a count, not the latest share: Evidently's counter shows a latest 0 as "no value"
                "Checks that found drift",
                "in the time range shown",
                "counter",
                [_check("checks", "drifted")],
                aggregation="sum",
            ),
            _panel(
                "Labelled ROC-AUC (latest)",
                "champion on labelled recent requests",
                "counter",
                [_check("ROC-AUC", "labelled.roc_auc")],
                aggregation="last",
            ),
            _panel(
                "Drift share over time",
                "share of drifted features; share of the champion's importance drifted",
                "line",
                [_check("drift share", "drift_share"), _check("importance drifted", "importance_drift_share")],
            ),
            _panel(
                "Rules fired",
                "1 per rule that fired in a check",
                "bar",
                [_metric("{{rule}}", RULE_FIRED)],
                is_stacked=True,
            ),
            _panel(
                "Per-feature drift scores",
                "Evidently's drift score of each column (threshold 0.1)",
                "line",
                [_metric(name, DRIFT_SCORE, column=name) for name in COLUMNS],
                size="full",
            ),
            _panel(
                "Predicted churn rate",
                "mean churn probability: window vs the champion's reference rows",
                "line",
                [_check("window", "predicted_churn_rate"), _check("reference", "reference_churn_rate")],
            ),
            _panel(
                "Rows per check",
                "valid rows in the window; labelled requests measured",
                "bar",
                [_check("window rows", "window.valid_rows"), _check("labelled rows", "labelled.rows")],
            ),
            _panel(
                "Labelled ROC-AUC and accuracy",
                "champion on requests whose outcome is known",
                "line",
                [_check("ROC-AUC", "labelled.roc_auc"), _check("accuracy", "labelled.accuracy")],
            ),
            _panel(
                "Calibration",
                "mean predicted probability vs observed churn rate; Brier score",
                "line",
                [
                    _check("mean predicted", "labelled.mean_probability"),
                    _check("observed churn", "labelled.churn_rate"),
                    _check("Brier", "labelled.brier"),
                ],
            ),
        ],
    )


def configure_gcsfs() -> None:
    """Make the gcsfs filesystem that Evidently opens for a gs:// workspace work against the GCS emulator too."""
    # gcsfs 2026.x probes each bucket's type over gRPC first, which against an emulator hangs 60 s per bucket
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    if os.environ.get("STORAGE_EMULATOR_HOST"):  # gcsfs reads the endpoint itself; no credentials to look for
        fsspec.config.conf.setdefault("gs", {})["token"] = "anon"


class History:
    """The Evidently workspace at `uri` (gs:// or a local directory), as the monitor writes it."""

    def __init__(self, uri: str):
        configure_gcsfs()
        self.state = LocalState(uri)

    def ensure_project(self, model_name: str) -> uuid.UUID:
        """Create the model's project if missing, and (re)write its dashboard; returns its id."""
        pid = project_id(model_name)
        try:
            self.state.read_project(pid)
        except FileNotFoundError:
            description = f"ChurnFlow drift and performance checks of model {model_name!r}"
            self.state.write_project(ProjectModel(id=pid, name=model_name, description=description))
        self.state.write_dashboard(pid, dashboard())
        return pid

    def add(self, pid: uuid.UUID, run: SnapshotModel) -> uuid.UUID:
        """Store a run; its id (a UUIDv7) sorts by the time it was added."""
        run_id = new_id()
        self.state.write_snapshot(pid, run_id, run)
        return run_id

    def runs(self, pid: uuid.UUID) -> list[str]:
        """The project's run ids, oldest first."""
        self.state.location.invalidate_cache(posixpath.join(str(pid), SNAPSHOTS_DIR_NAME))
        return sorted(str(run) for run in self.state.list_snapshots(pid))

    def prune(self, pid: uuid.UUID, keep: int) -> list[str]:
        """Delete all but the newest `keep` runs; returns the ids deleted."""
        old = self.runs(pid)[:-keep]
        for run_id in old:
            with contextlib.suppress(FileNotFoundError):  # a concurrent check pruned it first
                self.state.delete_snapshot(pid, run_id)
        return old


def record_check(settings: MonitorSettings, summary: CheckSummary, snapshot: Snapshot | None) -> str | None:
    """Add a check to the history and apply the retention; the run id, or None (with a warning) on failure.

    Like the MLflow run, the history is for looking back: a storage failure here must not fail the check.
    """
    try:
        history = History(layout.evidently_workspace_uri(settings.bucket))
        pid = history.ensure_project(settings.model_name)
        run_id = history.add(pid, run_model(summary, snapshot))
        history.prune(pid, settings.history_size)
    except Exception as error:  # any storage failure degrades to a warning
        log.warning("could not record check %s in the Evidently workspace: %s", summary.check_id, error)
        return None
    return str(run_id)
