"""`churnflow train`: load and check the data, fit, compile, store the reference rows, register."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnflow.registry import tags as tag_names
from churnflow.registry import write as registry_write
from churnflow.settings import TrainSettings
from churnflow.storage import gcs, layout
from churnflow.training import compiler, data, evaluation_plots, pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced."""

    version: registry_write.RegisteredVersion
    metrics: dict[str, float]
    data_fingerprint: str
    reference_uri: str


def store_reference(settings: TrainSettings, rows: pd.DataFrame, fingerprint: str) -> str:
    """Write the training rows to GCS as the drift reference of models trained on them."""
    uri = layout.gs_uri(settings.bucket, layout.reference_object(fingerprint))
    buffer = io.BytesIO()
    rows[list(data.schema.FEATURE_NAMES) + [data.schema.TARGET]].to_parquet(buffer, index=False)
    gcs.write_bytes(settings.project, uri, buffer.getvalue(), "application/vnd.apache.parquet")
    return uri


def data_source_uri(settings: TrainSettings) -> str:
    """Where the base training data came from, as a URI: settings.data_uri or the bundled file."""
    if settings.data_uri and settings.data_uri.startswith("gs://"):
        return settings.data_uri
    return Path(settings.data_uri or data.BUNDLED_DATASET).resolve().as_uri()


def lineage(
    settings: TrainSettings, train_rows: pd.DataFrame, evaluation_rows: pd.DataFrame, reference_uri: str
) -> list[registry_write.DatasetLineage]:
    """The run's input datasets: the training rows (stored at the reference URI) and the evaluation rows."""
    columns = list(data.schema.FEATURE_NAMES) + [data.schema.TARGET]
    return [
        registry_write.DatasetLineage(
            train_rows[columns], "training", reference_uri, data.fingerprint(train_rows), "training", data.schema.TARGET
        ),
        registry_write.DatasetLineage(
            evaluation_rows[columns],
            "evaluation",
            data_source_uri(settings),
            data.fingerprint(evaluation_rows),
            "evaluation",
            data.schema.TARGET,
        ),
    ]


def evaluation_files(model: Any, evaluation_rows: pd.DataFrame, threshold: float) -> dict[str, bytes]:
    """ROC, PR and calibration plots and the confusion matrix at the decision threshold, as run artifacts."""
    proba = model.predict_proba(pipeline.features(evaluation_rows))[:, 1]
    return evaluation_plots.evaluation_artifacts(data.target(evaluation_rows).to_numpy(), proba, threshold)


def register(
    settings: TrainSettings,
    model: Any,
    train_rows: pd.DataFrame,
    metrics: dict[str, float],
    params: dict[str, Any],
    extra_tags: dict[str, str] | None = None,
    *,
    evaluation_rows: pd.DataFrame,
) -> TrainOutcome:
    """Store the training rows as drift reference, then log, compile and register the fitted model.

    The run also gets its evaluation artifacts (plots and confusion matrix of `evaluation_rows` at the
    decision threshold) and its input datasets. The reference is written first, so no registered
    version ever lacks its reference.
    """
    fingerprint = data.fingerprint(train_rows)
    reference_uri = store_reference(settings, train_rows, fingerprint)
    tags = {
        tag_names.DATA_FINGERPRINT: fingerprint,
        tag_names.CODE_VERSION: registry_write.code_version(),
        tag_names.REFERENCE_URI: reference_uri,
        **(extra_tags or {}),
    }
    version = registry_write.log_and_register(
        settings,
        settings.experiment,
        model,
        pipeline.features(train_rows),
        compiler.compile_pipeline(model),
        {"model": "LogisticRegression", "max_iter": settings.max_iter, "train_rows": len(train_rows), **params},
        metrics,
        tags,
        files=evaluation_files(model, evaluation_rows, settings.decision_threshold),
        inputs=lineage(settings, train_rows, evaluation_rows, reference_uri),
    )
    log.info("registered %s v%s", version.name, version.version, extra={"metrics": metrics})
    return TrainOutcome(version, metrics, fingerprint, reference_uri)


def run_training(
    settings: TrainSettings, frame: pd.DataFrame | None = None, extra_tags: dict[str, str] | None = None
) -> TrainOutcome:
    """Train on `frame` (default: the dataset at settings.data_uri) and register the model.

    Bad data raises DataValidationError before anything is written or registered.
    """
    if frame is None:
        frame = data.load_dataset(settings.data_uri, settings.project)
    registry_write.check_reachable(settings.mlflow_tracking_uri, settings.registry_timeout_s)
    result = pipeline.train(
        frame, settings.test_size, settings.random_state, settings.max_iter, settings.decision_threshold
    )
    params = {
        "test_size": settings.test_size,
        "random_state": settings.random_state,
        "test_rows": len(result.test),
        "data_source": settings.data_uri or "bundled:data/telco_churn.csv",
    }
    return register(
        settings, result.model, result.train, result.metrics, params, extra_tags, evaluation_rows=result.test
    )
