"""`churnflow train`: load and check the data, fit, compile, store the reference rows, register."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from churnflow.registry import tags as tag_names
from churnflow.registry import write as registry_write
from churnflow.settings import TrainSettings
from churnflow.storage import gcs, layout
from churnflow.training import compiler, data, pipeline

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


def register(
    settings: TrainSettings,
    model: Any,
    train_rows: pd.DataFrame,
    metrics: dict[str, float],
    params: dict[str, Any],
    extra_tags: dict[str, str] | None = None,
) -> TrainOutcome:
    """Store the training rows as drift reference, then log, compile and register the fitted model.

    The reference is written first, so no registered version ever lacks its reference.
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
    result = pipeline.train(frame, settings.test_size, settings.random_state, settings.max_iter)
    params = {
        "test_size": settings.test_size,
        "random_state": settings.random_state,
        "test_rows": len(result.test),
        "data_source": settings.data_uri or "bundled:data/telco_churn.csv",
    }
    return register(settings, result.model, result.train, result.metrics, params, extra_tags)
