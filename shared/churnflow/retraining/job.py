"""The retrain Cloud Run Job: train a challenger on base data plus labelled recent traffic, judge it
against the champion on one evaluation set, and promote it only if it passes the gate.

Safe to rerun: one retrain runs at a time (GCS lock, waited for; a job that cannot get it exits
non-zero to be retried, its wait recorded in the request's state), a request whose champion is not
the current one is skipped, a finished request (by message id) is not redone, and the champion alias
moves last, so a job that dies half-way leaves the champion as it was.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from churnflow.core.messages import MESSAGE_ID_ENV, REQUEST_ENV, RetrainRequested
from churnflow.core.scorer import CompiledScorer
from churnflow.registry import tags as tag_names
from churnflow.registry import write as registry_write
from churnflow.registry.read import AliasNotFound, RegistryClient
from churnflow.retraining import evaluation, gate, request_state
from churnflow.retraining.lock import LockHeld, retrain_lock
from churnflow.retraining.recent_data import labelled_traffic
from churnflow.retraining.request_state import InvalidTransition, RetrainState
from churnflow.retraining.request_store import StateStore
from churnflow.settings import RetrainSettings
from churnflow.storage import gcs, layout
from churnflow.training import data, pipeline, register
from churnflow.training.compiler import compile_pipeline

log = logging.getLogger(__name__)


class RetrainResult(StrEnum):
    """What one execution did with its request."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    SKIPPED = "skipped"


# a metric that is not finite (e.g. ROC-AUC on rows of one class) is stored as JSON null, read back as NaN
Metrics = dict[str, Annotated[float, BeforeValidator(lambda value: math.nan if value is None else value)]]


class RetrainOutcome(BaseModel):
    """What one execution decided; stored, with `finished_at`, as the run record (layout.run_record)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: RetrainResult
    reason: str
    message_id: str
    version: int | None = None
    champion_version: int | None = None
    challenger_metrics: Metrics | None = None
    champion_metrics: Metrics | None = None
    challenger_recent: Metrics | None = None
    champion_recent: Metrics | None = None
    finished_at: datetime | None = None


def _lineage_tags(request: RetrainRequested | None, message_id: str, parts: evaluation.RetrainData) -> dict[str, str]:
    tags = {
        tag_names.TRIGGER_MESSAGE_ID: message_id,
        tag_names.RECENT_TRAIN_ROWS: str(len(parts.recent_train)),
        tag_names.RECENT_HOLDOUT_ROWS: str(len(parts.recent_holdout)),
        tag_names.EVALUATION_FINGERPRINT: data.fingerprint(parts.evaluation),
    }
    if request is not None:
        tags[tag_names.DRIFT_REPORT_URI] = request.report_uri
        tags[tag_names.TRIGGER_REASON] = request.reason[:250]
    return tags


def _metric_tags(prefix: str, metrics: dict[str, float]) -> dict[str, str]:
    return {f"{prefix}{name}": f"{value:.6f}" for name, value in metrics.items()}


def retrain(settings: RetrainSettings, request: RetrainRequested | None, message_id: str) -> RetrainOutcome:
    """One retrain: train, register, evaluate both models on the same rows, gate, move an alias."""
    client = RegistryClient(settings.mlflow_tracking_uri, settings.registry_timeout_s)
    try:
        champion = client.version_by_alias(settings.model_name, settings.champion_alias)
    except AliasNotFound:
        champion = None
    if request is not None and champion is not None and request.champion_version != champion.version:
        reason = (
            f"request was for v{request.champion_version}, which is not the champion (v{champion.version}): skipped"
        )
        return RetrainOutcome(
            status=RetrainResult.SKIPPED, reason=reason, message_id=message_id, champion_version=champion.version
        )

    base = data.load_dataset(settings.data_uri, settings.project)
    recent = labelled_traffic(settings)
    parts = evaluation.assemble(
        base, recent, settings.recent_holdout_fraction, settings.test_size, settings.random_state
    )
    model = pipeline.fit(parts.train, settings.max_iter, settings.random_state)
    challenger = CompiledScorer(compile_pipeline(model))
    challenger_metrics = evaluation.scorer_metrics(challenger, parts.evaluation)
    challenger_recent = evaluation.scorer_metrics(challenger, parts.recent_holdout)
    champion_metrics = champion_recent = None
    if champion is not None:
        champion_scorer = CompiledScorer(client.scorer_artifact(champion))
        champion_metrics = evaluation.scorer_metrics(champion_scorer, parts.evaluation)
        champion_recent = evaluation.scorer_metrics(champion_scorer, parts.recent_holdout)
    decision = gate.judge_challenger(
        challenger_metrics["roc_auc"],
        champion_metrics["roc_auc"] if champion_metrics else None,
        settings.auc_floor,
        settings.auc_tolerance,
    )
    tags = {
        **_lineage_tags(request, message_id, parts),
        **_metric_tags(tag_names.CHALLENGER_EVAL_PREFIX, challenger_metrics),
        **_metric_tags(tag_names.CHALLENGER_RECENT_PREFIX, challenger_recent),
        **(_metric_tags(tag_names.CHAMPION_EVAL_PREFIX, champion_metrics) if champion_metrics else {}),
        **(_metric_tags(tag_names.CHAMPION_RECENT_PREFIX, champion_recent) if champion_recent else {}),
        tag_names.CHAMPION_VERSION: str(champion.version) if champion else "none",
        tag_names.GATE_DECISION: "promote" if decision.promote else "reject",
        tag_names.GATE_REASON: decision.reason,
    }
    registered = register.register(
        settings,
        model,
        parts.train,
        pipeline.evaluate(model, parts.evaluation, settings.decision_threshold),
        {"recent_train_rows": len(parts.recent_train), "evaluation_rows": len(parts.evaluation)},
        tags,
        evaluation_rows=parts.evaluation,
    )
    version = registered.version.version
    if settings.champion_alias in registered.version.aliases:
        status = RetrainResult.PROMOTED  # the registry had no champion: the first version becomes it
    elif decision.promote:
        registry_write.set_alias(settings, settings.champion_alias, version)
        status = RetrainResult.PROMOTED
    else:
        registry_write.set_alias(settings, settings.challenger_alias, version)
        status = RetrainResult.REJECTED
    return RetrainOutcome(
        status=status,
        reason=decision.reason,
        message_id=message_id,
        version=version,
        champion_version=champion.version if champion else None,
        challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics,
        challenger_recent=challenger_recent,
        champion_recent=champion_recent,
    )


def _state_change(
    settings: RetrainSettings, request: RetrainRequested | None, change: Callable[[RetrainState | None], RetrainState]
) -> None:
    """Move the monitor's retrain state for this request; a state about another request is left alone."""
    if request is None:
        return
    try:
        StateStore(settings.project, settings.bucket, settings.model_name).update(change)
    except InvalidTransition as error:
        log.warning("retrain state not updated: %s", error)


def _already_done(settings: RetrainSettings, record: str) -> RetrainOutcome | None:
    """The stored outcome of a finished request, reported as skipped; None if it has not run."""
    done, _ = gcs.read_model(settings.project, settings.bucket, record, RetrainOutcome)
    if done is None:
        return None
    return done.model_copy(
        update={"status": RetrainResult.SKIPPED, "reason": f"already done: {done.status}", "finished_at": None}
    )


def run(settings: RetrainSettings, request: RetrainRequested | None, message_id: str) -> RetrainOutcome:
    """Retrain under the lock, once per request; records the outcome and moves the retrain state.

    A held lock is waited for (`lock_wait_s`); if it stays held, the request's state records the wait
    and LockHeld propagates, so the execution exits non-zero and Cloud Run retries it.
    """
    key = request.request_id if request is not None else message_id
    record = layout.run_record(key)
    if (done := _already_done(settings, record)) is not None:
        return done
    registry_write.configure_client(settings)
    try:
        with retrain_lock(settings.project, settings.bucket, message_id, settings.lock_ttl_s, settings.lock_wait_s):
            if (done := _already_done(settings, record)) is not None:  # a run that held the lock finished it
                return done
            _state_change(settings, request, lambda s: request_state.start(s, key, _now()))
            try:
                outcome = retrain(settings, request, message_id)
            except Exception as error:
                detail = f"{type(error).__name__}: {error}"
                _state_change(settings, request, lambda s: request_state.fail(s, key, _now(), detail))
                raise
            promoted = outcome.version if outcome.status is RetrainResult.PROMOTED else None
            _state_change(settings, request, lambda s: request_state.finish(s, key, _now(), promoted))
            gcs.write_model(
                settings.project, settings.bucket, record, outcome.model_copy(update={"finished_at": _now()}), 0
            )
    except LockHeld as error:
        waiting = f"waiting: {error}"
        _state_change(settings, request, lambda s: request_state.wait(s, key, _now(), waiting))
        raise
    return outcome


def _now() -> datetime:
    return datetime.now(UTC)


def _request_from_env() -> tuple[RetrainRequested | None, str]:
    raw = os.environ.get(REQUEST_ENV)
    request = RetrainRequested.model_validate_json(raw) if raw else None
    return request, os.environ.get(MESSAGE_ID_ENV) or f"manual-{uuid.uuid4().hex[:12]}"


def main() -> int:
    """Job entry point: exit 0 when done (promoted, rejected or skipped), non-zero so Cloud Run retries."""
    from churnflow.logs import configure_logging

    configure_logging()
    try:
        request, message_id = _request_from_env()
        outcome = run(RetrainSettings(), request, message_id)
    except LockHeld as error:
        print(
            json.dumps({"severity": "WARNING", "message": f"retrain not started, to be retried: {error}"}), flush=True
        )
        return 75  # EX_TEMPFAIL: Cloud Run retries the execution
    except Exception as error:  # noqa: BLE001 - the job's contract: one JSON error line, non-zero exit
        print(
            json.dumps({"severity": "ERROR", "message": f"retrain failed: {error}", "error": type(error).__name__}),
            flush=True,
        )
        return 1
    log.info("retrain %s: %s", outcome.status, outcome.reason, extra={"outcome": outcome.model_dump(mode="json")})
    return 0
