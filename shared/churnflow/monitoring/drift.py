"""The Evidently 0.7 adapter: the column mapping from the shared schema, one report, a typed result.

Results are read from `snapshot.dict()` by metric type and column name, never by position; each
column's verdict is Evidently's own drift test of that column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import DriftedColumnsCount, ValueDrift
from evidently.presets import DataDriftPreset

from churnflow import requestlog, schema
from churnflow.compiled import CompiledScorer
from churnflow.monitoring.models import ColumnDrift, DriftResult
from churnflow.settings import MonitorSettings

PREDICTION = requestlog.PROBABILITY
COLUMNS: tuple[str, ...] = (*schema.FEATURE_NAMES, PREDICTION)
_VALUE_DRIFT = ValueDrift.__get_type__()
_DRIFTED_COLUMNS = DriftedColumnsCount.__get_type__()
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


def data_definition() -> DataDefinition:
    """Evidently's column mapping, derived from the shared schema, plus the predicted probability."""
    return DataDefinition(
        numerical_columns=[*schema.NUMERIC_NAMES, PREDICTION], categorical_columns=list(schema.CATEGORICAL_NAMES)
    )


def with_prediction(rows: pd.DataFrame, scorer: CompiledScorer) -> pd.DataFrame:
    """The 19 features of `rows` plus the champion's churn probability for each row."""
    features = rows[list(schema.FEATURE_NAMES)]
    columns = {name: features[name].tolist() for name in schema.FEATURE_NAMES}
    return features.assign(**{PREDICTION: scorer.batch_probabilities(columns)})


def run_report(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> Snapshot:
    """Evidently's data-drift preset over the features, and a value-drift test of the prediction."""
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
            ValueDrift(column=PREDICTION, method=config.num_method, threshold=config.num_threshold),
        ],
        include_tests=True,
    )
    definition = data_definition()
    return report.run(
        Dataset.from_pandas(current[list(COLUMNS)], data_definition=definition),
        Dataset.from_pandas(reference[list(COLUMNS)], data_definition=definition),
    )


def _kind(column: str) -> str:
    if column == PREDICTION:
        return "prediction"
    return "numeric" if column in schema.NUMERIC_NAMES else "categorical"


def parse_snapshot(snapshot: Mapping[str, Any], current_rows: int, reference_rows: int) -> DriftResult:
    """Reduce `snapshot.dict()` to a DriftResult, reading metrics by type and column name."""
    verdicts = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in snapshot.get("tests", [])
        if test["metric_config"]["params"].get("type") == _VALUE_DRIFT
    }
    by_column: dict[str, ColumnDrift] = {}
    drifted_features = drift_share = None
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"] == _VALUE_DRIFT:
            column = config["column"]
            by_column[column] = ColumnDrift(
                column=column,
                kind=_kind(column),  # type: ignore[arg-type]
                method=config["method"],
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=verdicts[metric["id"]] == _FAILED,
            )
        elif config["type"] == _DRIFTED_COLUMNS:
            drifted_features = int(metric["value"]["count"])
            drift_share = float(metric["value"]["share"])
    missing = [c for c in COLUMNS if c not in by_column]
    if missing or drifted_features is None or drift_share is None:
        raise ValueError(f"Evidently snapshot lacks results for {missing or 'DriftedColumnsCount'}")
    return DriftResult(
        columns=tuple(by_column[c] for c in COLUMNS),
        drifted_features=drifted_features,
        drift_share=drift_share,
        current_rows=current_rows,
        reference_rows=reference_rows,
    )


def measure(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> tuple[DriftResult, Snapshot]:
    """Run the report on frames that carry the features and the prediction; the result and the snapshot."""
    snapshot = run_report(reference, current, config)
    return parse_snapshot(snapshot.dict(), len(current), len(reference)), snapshot
