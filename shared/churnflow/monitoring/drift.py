"""The Evidently 0.7 adapter: the column mapping from the shared schema, one report, a typed result.

A check's report runs, for each column, the drift test that Evidently's `ValueDrift` and
`DataDriftPreset` run (the stattest registered under the configured method, at its threshold) as a
`ValueDriftScore` metric, and shows them in one drift table: per column the reference and current
histograms, the method, the score and the verdict. `DataDriftPreset` reaches the same scores and
verdicts but runs each test three times and builds plotly figures for every column, twice: about a
second per report whatever the number of rows. `preset_report` keeps it as the yardstick the check
must agree with (the tests and bench/monitor.py compare the two).

Results are read from `snapshot.dict()` by metric type and column name, never by position; each
column's verdict is Evidently's own drift test of that column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.container import MetricContainer, MetricOrContainer
from evidently.core.metric_types import (
    MetricId,
    MetricTestResult,
    SingleValue,
    SingleValueCalculation,
    SingleValueMetric,
)
from evidently.core.report import Context, Snapshot
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.options import ColorOptions
from evidently.legacy.renderers.html_widgets import ColumnDefinition, RichTableDataRow, rich_table_data
from evidently.legacy.renderers.html_widgets import ColumnType as TableColumnType
from evidently.legacy.tests.base_test import TestStatus
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring.models import ColumnDrift, DriftResult
from churnflow.settings import MonitorSettings
from churnflow.storage import request_log

COLUMNS: tuple[str, ...] = (*schema.FEATURE_NAMES, request_log.PROBABILITY)
_NUMERIC: frozenset[str] = frozenset((*schema.NUMERIC_NAMES, request_log.PROBABILITY))
# Evidently counts pandas categoricals several times faster than strings, with the same results.
_CATEGORIES = {
    f.name: pd.CategoricalDtype(list(f.categories)) for f in schema.FEATURES if isinstance(f, schema.CategoricalFeature)
}
_BINS = 10
_COLOR = ColorOptions().primary_color
_TABLE_COLUMNS = [
    ColumnDefinition("Column", "column_name"),
    ColumnDefinition("Type", "column_type"),
    *(
        ColumnDefinition(
            title, field, TableColumnType.HISTOGRAM, options={"xField": "x", "yField": "y", "color": _COLOR}
        )
        for title, field in (("Reference share", "reference_distribution"), ("Current share", "current_distribution"))
    ),
    ColumnDefinition("Data Drift", "data_drift"),
    ColumnDefinition("Stat Test", "stattest_name"),
    ColumnDefinition("Threshold", "threshold"),
    ColumnDefinition("Drift Score", "drift_score"),
]
_FAILED = "FAIL"


@dataclass(frozen=True)
class DriftConfig:
    """How Evidently tests each column (methods and thresholds) and its default dataset rule."""

    num_method: str = "wasserstein"
    cat_method: str = "jensenshannon"
    num_threshold: float = 0.1
    cat_threshold: float = 0.1
    drift_share: float = 0.5

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> DriftConfig:
        """The drift configuration of the monitor's settings."""
        return cls(
            settings.num_method,
            settings.cat_method,
            settings.num_threshold,
            settings.cat_threshold,
            settings.drift_share,
        )

    def method(self, column: str) -> str:
        """The drift method of a column."""
        return self.num_method if column in _NUMERIC else self.cat_method

    def threshold(self, column: str) -> float:
        """The drift threshold of a column."""
        return self.num_threshold if column in _NUMERIC else self.cat_threshold


class ValueDriftScore(SingleValueMetric):
    """Evidently's drift test of one column, as `ValueDrift` runs it: the score, and a test that fails on drift."""

    class Config:
        type_alias = "churnflow:metric:ValueDriftScore"

    column: str
    method: str
    threshold: float


class ValueDriftScoreCalculation(SingleValueCalculation[ValueDriftScore]):
    """Runs the stattest registered under the metric's method; its widget is one row of the drift table."""

    def calculate(self, context: Context, current_data: Dataset, reference_data: Dataset | None) -> SingleValue:
        if reference_data is None:
            raise ValueError("ValueDriftScore needs reference data")
        column = self.metric.column
        current = current_data.column(column)
        reference = reference_data.column(column).data
        stattest = get_stattest(reference, current.data, current.type, self.metric.method)
        outcome = stattest(reference, current.data, current.type, self.metric.threshold)
        result = self.result(outcome.drift_score)
        edges = None
        if current.type == ColumnType.Numerical:  # one set of bins, so that the two histograms compare
            edges = np.histogram_bin_edges(np.concatenate([reference, current.data]), bins=_BINS)
        row = {
            "column_name": column,
            "column_type": current.type.value,
            "reference_distribution": _shares(reference, edges),
            "current_distribution": _shares(current.data, edges),
            "data_drift": "Detected" if outcome.drifted else "Not Detected",
            "stattest_name": stattest.display_name,
            "threshold": self.metric.threshold,
            "drift_score": round(float(outcome.drift_score), 6),
        }
        result.widget = [drift_table([row])]
        result.set_tests(
            [
                MetricTestResult(
                    id="drift",
                    name=f"Drift of {column}",
                    description=f"{stattest.display_name}: {outcome.drift_score:.3f}, drift from "
                    f"{self.metric.threshold:g}.",
                    metric_config=self.to_metric_config(),
                    test_config={},
                    status=TestStatus.FAIL if outcome.drifted else TestStatus.SUCCESS,
                )
            ]
        )
        return result

    def display_name(self) -> str:
        return f"Drift of {self.metric.column}"


def _shares(values: pd.Series, edges: np.ndarray | None) -> dict[str, list[Any]]:
    """A table histogram: the share of the values in each category, or in each bin of `edges`."""
    if edges is None:
        shares = values.value_counts(normalize=True, sort=False)
        return {"x": [str(c) for c in shares.index], "y": shares.round(4).tolist()}
    return {"x": edges[:-1].round(4).tolist(), "y": (np.histogram(values, edges)[0] / len(values)).round(4).tolist()}


def drift_table(rows: list[dict[str, Any]]) -> BaseWidgetInfo:
    """Evidently's rich table of per-column drift rows, the most drifted first."""
    drifted = sum(row["data_drift"] == "Detected" for row in rows)
    return rich_table_data(
        title=f"Drift is detected for {drifted} of {len(rows)} columns.",
        rows_per_page=len(rows),
        columns=_TABLE_COLUMNS,
        data=[RichTableDataRow(fields=row) for row in sorted(rows, key=lambda r: r["drift_score"], reverse=True)],
    )


class DriftTable(MetricContainer):
    """The ValueDriftScore metrics of a report, rendered as one drift table."""

    drifts: list[ValueDriftScore]

    def generate_metrics(self, context: Context) -> Sequence[MetricOrContainer]:
        return self.drifts

    def render(
        self, context: Context, child_widgets: list[tuple[MetricId | None, list[BaseWidgetInfo]]] | None = None
    ) -> list[BaseWidgetInfo]:
        return [drift_table([row for _, widgets in child_widgets or [] for w in widgets for row in w.params["data"]])]


def data_definition() -> DataDefinition:
    """Evidently's column mapping, derived from the shared schema, plus the predicted probability."""
    return DataDefinition(
        numerical_columns=[*schema.NUMERIC_NAMES, request_log.PROBABILITY],
        categorical_columns=list(schema.CATEGORICAL_NAMES),
    )


def with_prediction(rows: pd.DataFrame, scorer: CompiledScorer) -> pd.DataFrame:
    """The 19 features of `rows` plus the champion's churn probability for each row."""
    features = rows[list(schema.FEATURE_NAMES)]
    columns = {name: features[name].tolist() for name in schema.FEATURE_NAMES}
    return features.assign(**{request_log.PROBABILITY: scorer.batch_probabilities(columns)})


def run_report(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> Snapshot:
    """The check's report: Evidently's drift test of every column, one drift table."""
    report = Report(
        [
            DriftTable(
                drifts=[
                    ValueDriftScore(column=c, method=config.method(c), threshold=config.threshold(c)) for c in COLUMNS
                ]
            )
        ]
    )
    definition = data_definition()
    return report.run(
        Dataset.from_pandas(current[list(COLUMNS)].astype(_CATEGORIES), data_definition=definition),
        Dataset.from_pandas(reference[list(COLUMNS)].astype(_CATEGORIES), data_definition=definition),
    )


def preset_report(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> Snapshot:
    """Plain Evidently: the data-drift preset over the features and a value-drift test of the prediction."""
    report = Report(
        [
            DataDriftPreset(
                columns=list(schema.FEATURE_NAMES),
                drift_share=config.drift_share,
                num_method=config.num_method,
                cat_method=config.cat_method,
                num_threshold=config.num_threshold,
                cat_threshold=config.cat_threshold,
            ),
            ValueDrift(column=request_log.PROBABILITY, method=config.num_method, threshold=config.num_threshold),
        ],
        include_tests=True,
    )
    definition = data_definition()
    return report.run(
        Dataset.from_pandas(current[list(COLUMNS)], data_definition=definition),
        Dataset.from_pandas(reference[list(COLUMNS)], data_definition=definition),
    )


_DRIFT_METRICS = frozenset({ValueDriftScore.__get_type__(), ValueDrift.__get_type__()})


def _kind(column: str) -> str:
    if column == request_log.PROBABILITY:
        return "prediction"
    return "numeric" if column in schema.NUMERIC_NAMES else "categorical"


def parse_snapshot(snapshot: Mapping[str, Any], current_rows: int, reference_rows: int) -> DriftResult:
    """Reduce `snapshot.dict()` of either report to a DriftResult, reading the per-column drift metrics
    (ValueDriftScore or ValueDrift) and their tests by type and column name."""
    verdicts = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in snapshot.get("tests", [])
        if test["metric_config"]["params"].get("type") in _DRIFT_METRICS
    }
    by_column: dict[str, ColumnDrift] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"] in _DRIFT_METRICS:
            column = config["column"]
            by_column[column] = ColumnDrift(
                column=column,
                kind=_kind(column),
                method=config["method"],
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=verdicts[metric["id"]] == _FAILED,
            )
    if missing := [c for c in COLUMNS if c not in by_column]:
        raise ValueError(f"Evidently snapshot lacks results for {missing}")
    columns = tuple(by_column[c] for c in COLUMNS)
    drifted_features = sum(c.drifted for c in columns if c.kind != "prediction")
    return DriftResult(
        columns=columns,
        drifted_features=drifted_features,
        drift_share=drifted_features / len(schema.FEATURE_NAMES),
        current_rows=current_rows,
        reference_rows=reference_rows,
    )


def score_columns(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> tuple[DriftResult, Snapshot]:
    """Run the check's report on frames that carry the features and the prediction; the result and the snapshot."""
    snapshot = run_report(reference, current, config)
    result = parse_snapshot(snapshot.dict(), len(current), len(reference))
    rates = {
        "predicted_churn_rate": float(current[request_log.PROBABILITY].mean()),
        "reference_churn_rate": float(reference[request_log.PROBABILITY].mean()),
    }
    return result.model_copy(update=rates), snapshot
