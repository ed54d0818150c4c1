"""One drift check, end to end: champion → window → Evidently → policy → report → trigger → records.

Order matters for retries: the report is stored before the trigger (the message names it), the
trigger is all-or-nothing (see request_store.request_retrain), and the summary and index are written
last, so a check that fails midway leaves no trigger half done and can simply run again.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd
from evidently.core.report import Snapshot
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from churnflow.bus.pubsub import Publisher, pubsub_publisher
from churnflow.core.messages import RetrainRequested
from churnflow.monitoring import drift, history, policy, tracking
from churnflow.monitoring.champion import Champion, load_champion, load_reference
from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.models import CheckStatus, CheckSummary, WindowStats
from churnflow.monitoring.performance import labelled_performance
from churnflow.monitoring.reports import ReportStore
from churnflow.monitoring.window import choose_window, error_bound
from churnflow.registry.read import RegistryError
from churnflow.retraining.request_state import RequestOutcome, Timing
from churnflow.retraining.request_store import PublishFailed, StateStore, request_retrain
from churnflow.settings import MonitorSettings
from churnflow.storage import gcs, layout
from churnflow.storage.request_log_reader import RequestLogReader
from churnflow.storage.request_log_sample import WindowSample

log = logging.getLogger(__name__)
# OSError covers the HTTP clients' connection failures and timeouts (requests' errors derive from it).
_UPSTREAM_ERRORS = (GoogleAPIError, GoogleAuthError, RegistryError, OSError, gcs.Contention, PublishFailed)


def new_check_id(now: datetime) -> str:
    """A unique, time-sortable id for a check."""
    return f"{layout.format_time(now)}-{uuid.uuid4().hex[:8]}"


def window_stats(sample: WindowSample, confidence: float) -> WindowStats:
    """What the check read, for the summary."""
    tested = len(sample.frame)
    effect = sample.design_effect if sample.sampled else 1.0
    effective = int(tested / effect)
    return WindowStats(
        start=sample.window.start,
        end=sample.window.end,
        objects=sample.objects,
        objects_read=sample.objects_read,
        corrupt_objects=sample.corrupt_objects,
        unnamed_objects=sample.unnamed_objects,
        lines=sample.lines,
        parsed_lines=sample.parsed,
        bad_lines=sample.bad_lines,
        bad_rows=sample.bad_rows,
        valid_rows=sample.valid_rows,
        tested_rows=tested,
        sampled=sample.sampled,
        design_effect=round(effect, 3),
        effective_rows=effective,
        sample_error_bound=error_bound(effective, confidence) if sample.sampled else 0.0,
        model_versions=sample.model_versions,
    )


def run_check(settings: MonitorSettings, now: datetime | None = None, publish: Publisher | None = None) -> CheckSummary:
    """Run one check and return its summary; raises MonitorUnavailable when GCS, MLflow or Pub/Sub fail."""
    try:
        return _run(settings, now or datetime.now(UTC), publish)
    except _UPSTREAM_ERRORS as error:
        raise MonitorUnavailable(f"{type(error).__name__}: {error}") from error


def _run(settings: MonitorSettings, now: datetime, publish: Publisher | None) -> CheckSummary:
    started = time.perf_counter()
    check_id = new_check_id(now)
    reports = ReportStore(settings.project, settings.bucket)
    # The champion and its reference rows do not depend on the window: they load while it is read.
    with ThreadPoolExecutor(max_workers=1) as background:
        champion_loading = background.submit(load_champion, settings)
        reference_loading = background.submit(_reference, settings.project, champion_loading)
        settled = now - timedelta(seconds=settings.settle_s)
        window = choose_window(
            settled, settings.window_hours, reports.read_index().last_decided_end(), settings.since_last_check
        )
        sample = RequestLogReader(settings.project, settings.bucket, settings.read_workers).read_sample(
            window, settings.sample_rows, settings.sample_objects, settings.sample_seed
        )
        champion = champion_loading.result()
        summary = CheckSummary(
            check_id=check_id,
            checked_at=now,
            status=CheckStatus.INSUFFICIENT_DATA,
            model_name=settings.model_name,
            champion_version=champion.version,
            data_fingerprint=champion.fingerprint,
            window=window_stats(sample, settings.sample_confidence),
            summary_uri=layout.gs_uri(settings.bucket, layout.summary_object(check_id)),
            trigger=RequestOutcome(action="none", reason=f"fewer than {settings.min_rows} valid rows"),
        )
        snapshot = None
        if len(sample.frame) >= settings.min_rows:
            summary, snapshot = _assess(settings, champion, reference_loading.result(), sample, reports, summary)
    if (request := retrain_request(summary)) is not None:
        outcome = request_retrain(
            StateStore(settings.project, settings.bucket, settings.model_name),
            publish or pubsub_publisher(settings.project, settings.retrain_topic, settings.publish_timeout_s),
            request,
            now,
            Timing.from_settings(settings),
        )
        summary = summary.model_copy(update={"trigger": outcome})
    performance = labelled_performance(settings, now, champion.version, settings.label_lookback_days)
    summary = summary.model_copy(update={"performance": performance})
    summary = summary.model_copy(update={"mlflow_run_id": tracking.log_check(settings, summary)})
    history.record_check(settings, summary, snapshot)
    summary = summary.model_copy(update={"duration_s": round(time.perf_counter() - started, 3)})
    reports.write_summary(summary)
    reports.record(summary, settings.report_index_size)
    log.info(
        "check %s: %s",
        check_id,
        summary.status,
        extra={"check_id": check_id, "status": str(summary.status), "trigger": summary.trigger.action},
    )
    return summary


def _reference(project: str, champion: Future[Champion]) -> pd.DataFrame:
    """The champion's reference rows with its predictions."""
    loaded = champion.result()
    return drift.with_prediction(load_reference(project, loaded), loaded.scorer)


def _assess(
    settings: MonitorSettings,
    champion: Champion,
    reference: pd.DataFrame,
    sample: WindowSample,
    reports: ReportStore,
    summary: CheckSummary,
) -> tuple[CheckSummary, Snapshot]:
    """Evidently on the sample vs the champion's reference, the policy's decision, the stored HTML report."""
    current = drift.with_prediction(sample.frame, champion.scorer)
    result, snapshot = drift.score_columns(reference, current, drift.DriftConfig.from_settings(settings))
    decision = policy.assess_drift(
        result, champion.scorer.feature_importance(), policy.DriftPolicy.from_settings(settings)
    )
    assessed = summary.model_copy(
        update={
            "status": CheckStatus.DRIFT if decision.drifted else CheckStatus.NO_DRIFT,
            "drift": result,
            "decision": decision,
            "report_uri": reports.write_report(summary.check_id, snapshot.get_html_str(as_iframe=False)),
            "trigger": RequestOutcome(action="none", reason="no drift"),
        }
    )
    return assessed, snapshot


def retrain_request(summary: CheckSummary) -> RetrainRequested | None:
    """The retrain request of a check that found drift (None for any other outcome)."""
    if summary.status is not CheckStatus.DRIFT or not (summary.drift and summary.decision and summary.report_uri):
        return None
    return RetrainRequested(
        model_name=summary.model_name,
        champion_version=summary.champion_version,
        reason=summary.decision.reason,
        rules=tuple(summary.decision.rules_fired),
        drift_share=summary.drift.drift_share,
        drifted_columns=tuple(c.column for c in summary.drift.columns if c.drifted),
        window_start=summary.window.start,
        window_end=summary.window.end,
        window_rows=summary.window.valid_rows,
        check_id=summary.check_id,
        report_uri=summary.report_uri,
    )
