"""The retrain Cloud Run Job: train a challenger on labelled recent traffic plus down-weighted base data,
judge it against the champion on the newest labelled traffic (out of time) and a base check set, and
promote it only if it passes the gate (`evaluation` and `gate` say how).

Safe to rerun: one retrain runs at a time (GCS lock, waited for; a job that cannot get it exits
non-zero to be retried, its wait recorded in the request's state), a request whose champion is not
the current one is skipped, a finished request (by message id) is not redone, and the champion alias
moves last, so a job that dies half-way leaves the champion as it was.
"""

from __future__ import annotations

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
from churnflow.registry.read import AliasNotFound, ModelVersion, RegistryClient
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
EVENT = "retrain_execution"
"""The `event` of each execution's last log line; its `status` is a RetrainResult, DEFERRED or FAILED."""
DEFERRED = "deferred"
FAILED = "failed"


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
    gate_checks: dict[str, bool] | None = None
    oot_cut_ts: float | None = None
    challenger_oot: Metrics | None = None
    champion_oot: Metrics | None = None
    challenger_base: Metrics | None = None
    champion_base: Metrics | None = None
    finished_at: datetime | None = None


def _stamp(value: float | None) -> str:
    return f"{value:.6f}" if value is not None else "none"


def _lineage_tags(request: RetrainRequested | None, message_id: str, parts: evaluation.RetrainData) -> dict[str, str]:
    bounds = parts.bounds()
    tags = {
        tag_names.TRIGGER_MESSAGE_ID: message_id,
        tag_names.RECENT_TRAIN_ROWS: str(len(parts.recent_train)),
        tag_names.BASE_TRAIN_ROWS: str(parts.base_train_rows),
        tag_names.BASE_WEIGHT: f"{parts.base_weight:.6f}",
        tag_names.TRAIN_RECENT_FIRST_TS: _stamp(bounds["train_first"]),
        tag_names.TRAIN_RECENT_LAST_TS: _stamp(bounds["train_last"]),
        tag_names.OOT_CUT_TS: _stamp(bounds["oot_cut"]),
        tag_names.OOT_LAST_TS: _stamp(bounds["oot_last"]),
        tag_names.OOT_ROWS: str(len(parts.out_of_time)),
        tag_names.EVALUATION_FINGERPRINT: data.fingerprint(parts.out_of_time),
    }
    if request is not None:
        tags[tag_names.DRIFT_REPORT_URI] = request.report_uri
        tags[tag_names.TRIGGER_REASON] = request.reason[:5000]
        tags[tag_names.TRIGGER_RULES] = ",".join(request.rules)
    return tags


def _metric_tags(prefix: str, metrics: dict[str, float]) -> dict[str, str]:
    return {f"{prefix}{name}": f"{value:.6f}" for name, value in metrics.items()}


def trained_until(versions: list[ModelVersion]) -> float | None:
    """The logged time of the newest recent request any of `versions` trained on (None: none did)."""
    stamps = []
    for version in versions:
        try:
            stamps.append(float(version.tags.get(tag_names.TRAIN_RECENT_LAST_TS, "none")))
        except ValueError:
            continue
    return max(stamps, default=None)


def _alias(client: RegistryClient, settings: RetrainSettings, alias: str) -> ModelVersion | None:
    try:
        return client.version_by_alias(settings.model_name, alias)
    except AliasNotFound:
        return None


def retrain(settings: RetrainSettings, request: RetrainRequested | None, message_id: str) -> RetrainOutcome:
    """One retrain: train on recent + down-weighted base rows, register, judge both models out of time, gate."""
    client = RegistryClient(settings.mlflow_tracking_uri, settings.registry_timeout_s)
    champion = _alias(client, settings, settings.champion_alias)
    if request is not None and champion is not None and request.champion_version != champion.version:
        reason = (
            f"request was for v{request.champion_version}, which is not the champion (v{champion.version}): skipped"
        )
        return RetrainOutcome(
            status=RetrainResult.SKIPPED, reason=reason, message_id=message_id, champion_version=champion.version
        )
    # every version is the champion or the (latest) challenger when it is registered: together they bound
    # what any version trained on, and the out-of-time rows start after that
    earlier = [v for v in (champion, _alias(client, settings, settings.challenger_alias)) if v is not None]
    base = data.load_dataset(settings.data_uri, settings.project)
    parts = evaluation.assemble(
        base,
        labelled_traffic(settings),
        settings.oot_fraction,
        trained_until(earlier),
        settings.base_weight_share,
        settings.test_size,
        settings.random_state,
    )
    model = pipeline.fit(parts.train, settings.max_iter, settings.random_state, parts.weights)
    challenger = CompiledScorer(compile_pipeline(model))
    challenger_oot = evaluation.scorer_metrics(challenger, parts.out_of_time)
    challenger_base = evaluation.scorer_metrics(challenger, parts.base_check)
    champion_oot = champion_base = None
    brier_gain_se = 0.0
    if champion is not None:
        champion_scorer = CompiledScorer(client.scorer_artifact(champion))
        champion_oot = evaluation.scorer_metrics(champion_scorer, parts.out_of_time)
        champion_base = evaluation.scorer_metrics(champion_scorer, parts.base_check)
        brier_gain_se = evaluation.paired_brier_se(
            data.target(parts.out_of_time).to_numpy(),
            evaluation.probabilities(challenger, parts.out_of_time),
            evaluation.probabilities(champion_scorer, parts.out_of_time),
        )
    decision = gate.judge_challenger(
        challenger_oot,
        champion_oot,
        challenger_base,
        champion_base,
        gate.GatePolicy.from_settings(settings),
        brier_gain_se,
    )
    tags = {
        **_lineage_tags(request, message_id, parts),
        **_metric_tags(tag_names.CHALLENGER_OOT_PREFIX, challenger_oot),
        **_metric_tags(tag_names.CHALLENGER_BASE_PREFIX, challenger_base),
        **(_metric_tags(tag_names.CHAMPION_OOT_PREFIX, champion_oot) if champion_oot else {}),
        **(_metric_tags(tag_names.CHAMPION_BASE_PREFIX, champion_base) if champion_base else {}),
        tag_names.CHAMPION_VERSION: str(champion.version) if champion else "none",
        tag_names.GATE_DECISION: "promote" if decision.promote else "reject",
        tag_names.GATE_REASON: decision.reason[:5000],
        tag_names.GATE_CHECKS: decision.checks_tag(),
    }
    # what the version is expected to reach in production (the monitor's performance rule reads these):
    # the newest traffic when there is enough of it, else the base check set
    judged_on = parts.out_of_time if len(parts.out_of_time) >= settings.min_oot_rows else parts.base_check
    expected = pipeline.evaluate(model, judged_on, settings.decision_threshold)
    registered = register.register(
        settings,
        model,
        parts.train,
        expected,
        {
            "recent_train_rows": len(parts.recent_train),
            "oot_rows": len(parts.out_of_time),
            "base_weight": parts.base_weight,
            "metrics_on": "out_of_time" if judged_on is parts.out_of_time else "base_check",
            "evaluation_rows": len(judged_on),
        },
        tags,
        evaluation_rows=judged_on,
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
        gate_checks=decision.checks,
        oot_cut_ts=parts.bounds()["oot_cut"],
        challenger_oot=challenger_oot,
        champion_oot=champion_oot,
        challenger_base=challenger_base,
        champion_base=champion_base,
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
        log.warning("retrain not started, to be retried: %s", error, extra={"event": EVENT, "status": DEFERRED})
        return 75  # EX_TEMPFAIL: Cloud Run retries the execution
    except Exception as error:  # noqa: BLE001 - the job's contract: one JSON error line, non-zero exit
        log.exception(
            "retrain failed: %s", error, extra={"event": EVENT, "status": FAILED, "error": type(error).__name__}
        )
        return 1
    log.info(
        "retrain %s: %s",
        outcome.status,
        outcome.reason,
        extra={
            "event": EVENT,
            "status": str(outcome.status),
            "version": outcome.version,
            "champion_version": outcome.champion_version,
            "challenger_roc_auc": (outcome.challenger_oot or {}).get("roc_auc"),
            "champion_roc_auc": (outcome.champion_oot or {}).get("roc_auc"),
            "outcome": outcome.model_dump(mode="json"),
        },
    )
    return 0
