"""One drift check, end to end: champion → window → Evidently → policy → report → trigger → records.

Order matters for retries: the report is stored before the trigger (the message names it), the
trigger is all-or-nothing (see request_store.request_retrain), and the summary and index are written
last, so a check that fails midway leaves no trigger half done and can simply run again.
"""

from __future__ import annotations

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
from churnflow.monitoring import drift, history, metrics, policy, tracking
from churnflow.monitoring.champion import Champion, load_champion, load_reference
from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.models import CheckStatus, CheckSummary, LabelledPerformance, Rule, WindowStats
from churnflow.monitoring.performance import labelled_performance
from churnflow.monitoring.performance_rule import PerformancePolicy, assess_performance
from churnflow.monitoring.reports import ReportIndex, ReportStore, performance_section
from churnflow.monitoring.window import choose_window, error_bound
from churnflow.registry.read import RegistryError
from churnflow.retraining.request_state import RequestOutcome, Timing
from churnflow.retraining.request_store import PublishFailed, StateStore, request_retrain
from churnflow.settings import MonitorSettings
from churnflow.storage import gcs, layout
from churnflow.storage.request_log_reader import RequestLogReader
from churnflow.storage.request_log_sample import WindowSample

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
    # The champion, its reference rows and its labelled performance do not depend on the window: they
    # load while it is read and judged (DuckDB and the storage client release the GIL).
    with ThreadPoolExecutor(max_workers=2) as background:
        champion_loading = background.submit(load_champion, settings)
        reference_loading = background.submit(_reference, settings.project, champion_loading)
        performance_loading = background.submit(_labelled, settings, champion_loading, now)
        settled = now - timedelta(seconds=settings.settle_s)
        index = reports.read_index()
        window = choose_window(settled, settings.window_hours, index.last_decided_end(), settings.since_last_check)
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
        snapshot: Snapshot | None = None
        summary = _judge_performance(settings, champion, performance_loading.result(), summary)
        if len(sample.frame) >= settings.min_rows:
            previous = _previous_over_bar(index, champion.version)
            summary, snapshot = _assess(
                settings, champion, reference_loading.result(), sample, reports, summary, previous
            )
        elif summary.performance_decision and summary.performance_decision.degraded:
            html = f"<!doctype html><html><body>{performance_section(summary)}</body></html>"
            summary = summary.model_copy(update={"report_uri": reports.write_report(check_id, html)})
    if (request := retrain_request(summary)) is not None:
        outcome = request_retrain(
            StateStore(settings.project, settings.bucket, settings.model_name),
            publish or pubsub_publisher(settings.project, settings.retrain_topic, settings.publish_timeout_s),
            request,
            now,
            Timing.from_settings(settings),
        )
        summary = summary.model_copy(update={"trigger": outcome})
    summary = summary.model_copy(update={"mlflow_run_id": tracking.log_check(settings, summary)})
    history.record_check(settings, summary, snapshot)
    summary = summary.model_copy(update={"duration_s": round(time.perf_counter() - started, 3)})
    reports.write_summary(summary)
    reports.record(summary, settings.report_index_size)
    metrics.log_check(summary)
    return summary


def _reference(project: str, champion: Future[Champion]) -> pd.DataFrame:
    """The champion's reference rows with its predictions."""
    loaded = champion.result()
    return drift.with_prediction(load_reference(project, loaded), loaded.scorer)


def _labelled(settings: MonitorSettings, champion: Future[Champion], now: datetime) -> LabelledPerformance | None:
    """The champion's labelled performance in the look-back."""
    return labelled_performance(settings, now, champion.result().version, settings.label_lookback_days)


def _judge_performance(
    settings: MonitorSettings, champion: Champion, known: LabelledPerformance | None, summary: CheckSummary
) -> CheckSummary:
    """The champion's labelled performance and the performance rule's verdict on it."""
    verdict = None
    if known is not None:
        verdict = assess_performance(known, champion.expected, PerformancePolicy.from_settings(settings))
    return summary.model_copy(update={"performance": known, "performance_decision": verdict})


def _previous_over_bar(index: ReportIndex, champion_version: int) -> frozenset[Rule]:
    """The drift rules at or over their bar in the latest decided check of this champion (persistence)."""
    for entry in index.entries:
        if entry.status is not CheckStatus.INSUFFICIENT_DATA and entry.champion_version == champion_version:
            return frozenset(Rule(rule) for rule in entry.rules_over_bar)
    return frozenset()


def _assess(
    settings: MonitorSettings,
    champion: Champion,
    reference: pd.DataFrame,
    sample: WindowSample,
    reports: ReportStore,
    summary: CheckSummary,
    previous_over_bar: frozenset[Rule],
) -> tuple[CheckSummary, Snapshot]:
    """Evidently on the sample vs the champion's reference, the policy's decision, the stored HTML report."""
    current = drift.with_prediction(sample.frame, champion.scorer)
    result, snapshot = drift.score_columns(reference, current, drift.DriftConfig.from_settings(settings))
    decision = policy.assess_drift(
        result, champion.scorer.feature_importance(), policy.DriftPolicy.from_settings(settings), previous_over_bar
    )
    summary = summary.model_copy(
        update={"status": CheckStatus.DRIFT if decision.drifted else CheckStatus.NO_DRIFT, "drift": result}
    )
    summary = summary.model_copy(update={"decision": decision})
    html = snapshot.get_html_str(as_iframe=False).replace("<body>", f"<body>{performance_section(summary)}", 1)
    assessed = summary.model_copy(
        update={
            "report_uri": reports.write_report(summary.check_id, html),
            "trigger": RequestOutcome(action="none", reason="no rule fired"),
        }
    )
    return assessed, snapshot


def retrain_request(summary: CheckSummary) -> RetrainRequested | None:
    """The retrain request of a check where a drift or performance rule fired (None otherwise)."""
    if not summary.retrain_rules or not summary.report_uri:
        return None
    reasons = []
    if summary.status is CheckStatus.DRIFT and summary.decision:
        reasons.append(f"drift: {summary.decision.reason}")
    if summary.performance_decision and summary.performance_decision.degraded:
        reasons.append(f"performance: {summary.performance_decision.reason}")
    return RetrainRequested(
        model_name=summary.model_name,
        champion_version=summary.champion_version,
        reason=" | ".join(reasons),
        rules=summary.retrain_rules,
        drift_share=summary.drift.drift_share if summary.drift else 0.0,
        drifted_columns=tuple(c.column for c in summary.drift.columns if c.drifted) if summary.drift else (),
        window_start=summary.window.start,
        window_end=summary.window.end,
        window_rows=summary.window.valid_rows,
        check_id=summary.check_id,
        report_uri=summary.report_uri,
    )
