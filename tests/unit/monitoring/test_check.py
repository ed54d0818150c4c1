"""Which checks request a retrain, and what the request says: drift, performance, both or neither (pure)."""

from datetime import UTC, datetime

from churnflow.monitoring.check import _previous_over_bar, retrain_request
from churnflow.monitoring.models import (
    CheckStatus,
    CheckSummary,
    DriftDecision,
    LabelledPerformance,
    PerformanceDecision,
    PerformanceRule,
    Rule,
    SegmentCalibration,
    WindowStats,
)
from churnflow.monitoring.reports import IndexEntry, ReportIndex, performance_section
from churnflow.retraining.request_state import RequestOutcome

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
WINDOW = WindowStats(
    start=NOW,
    end=NOW,
    objects=1,
    objects_read=1,
    corrupt_objects=0,
    unnamed_objects=0,
    lines=900,
    parsed_lines=900,
    bad_lines=0,
    bad_rows=0,
    valid_rows=900,
    tested_rows=900,
    sampled=False,
    design_effect=1.0,
    effective_rows=900,
    sample_error_bound=0.0,
    model_versions={1: 900},
)
NO_DRIFT = DriftDecision(
    drifted=False,
    rules_fired=(),
    reason="no rule fired: …",
    noise_floor=0.1,
    importance_drift_share=0.0,
    prediction_score=0.01,
    counted_columns=(),
)
DEGRADED = PerformanceDecision(
    decided=True,
    degraded=True,
    rules_fired=(PerformanceRule.AUC, PerformanceRule.CALIBRATION),
    reason="on 2400 labelled requests at 99.5% confidence: labelled_auc: labelled AUC 0.700 …",
    labels=2400,
    z=2.58,
)


def summary(status=CheckStatus.NO_DRIFT, decision=NO_DRIFT, verdict=None, report="gs://b/reports/checks/c1/r.html"):
    return CheckSummary(
        check_id="c1",
        checked_at=NOW,
        status=status,
        model_name="churn",
        champion_version=3,
        data_fingerprint="f" * 64,
        window=WINDOW,
        decision=decision,
        report_uri=report,
        summary_uri="gs://b/reports/checks/c1/summary.json",
        trigger=RequestOutcome(action="none", reason="no rule fired"),
        performance_decision=verdict,
    )


def test_no_rule_fired_no_request():
    assert retrain_request(summary()) is None
    quiet = DEGRADED.model_copy(update={"degraded": False, "rules_fired": ()})
    assert retrain_request(summary(verdict=quiet)) is None


def test_a_performance_rule_requests_a_retrain_like_drift_does():
    request = retrain_request(summary(verdict=DEGRADED))
    assert request is not None and request.champion_version == 3 and request.check_id == "c1"
    assert request.rules == ("labelled_auc", "labelled_calibration")
    assert request.reason.startswith("performance: on 2400 labelled requests")
    assert request.drift_share == 0.0 and request.report_uri == "gs://b/reports/checks/c1/r.html"


def test_a_performance_rule_fires_even_when_the_window_was_too_small_for_drift():
    request = retrain_request(summary(status=CheckStatus.INSUFFICIENT_DATA, decision=None, verdict=DEGRADED))
    assert request is not None and request.rules == ("labelled_auc", "labelled_calibration")


def test_drift_and_performance_are_both_named():
    drift = NO_DRIFT.model_copy(update={"drifted": True, "rules_fired": (Rule.FEATURE,), "reason": "feature: …"})
    request = retrain_request(summary(status=CheckStatus.DRIFT, decision=drift, verdict=DEGRADED))
    assert request.rules == ("feature", "labelled_auc", "labelled_calibration")
    assert request.reason.startswith("drift: feature: … | performance: on 2400")


def test_the_report_and_the_index_say_which_rules_fired():
    checked = summary(verdict=DEGRADED)
    html = performance_section(checked)
    assert "retrain rules fired: labelled_auc, labelled_calibration" in html and "labelled AUC 0.700" in html
    assert IndexEntry.of(checked).rules_fired == ("labelled_auc", "labelled_calibration")


def entry(check_id, status, version, over):
    return IndexEntry(
        check_id=check_id,
        checked_at=NOW,
        status=status,
        drift_share=0.0,
        rules_fired=(),
        rules_over_bar=over,
        champion_version=version,
        window_start=NOW,
        window_end=NOW,
        valid_rows=900,
        report_uri=None,
        summary_uri="gs://b/s.json",
    )


def test_persistence_reads_the_latest_decided_check_of_the_same_champion():
    index = ReportIndex(
        entries=(
            entry("c3", CheckStatus.INSUFFICIENT_DATA, 3, ()),
            entry("c2", CheckStatus.NO_DRIFT, 3, ("prediction",)),
            entry("c1", CheckStatus.DRIFT, 3, ("share",)),
        )
    )
    assert _previous_over_bar(index, 3) == frozenset({Rule.PREDICTION})
    assert _previous_over_bar(index, 4) == frozenset()  # a new champion starts afresh


def test_the_report_shows_the_segments_furthest_from_calibration_first():
    def segment(level, rows, observed, predicted):
        se = (predicted * (1 - predicted) / rows) ** 0.5
        return SegmentCalibration(
            feature="Contract",
            level=level,
            rows=rows,
            observed_rate=observed,
            predicted_rate=predicted,
            standard_error=se,
        )

    known = LabelledPerformance(
        model_version=3,
        rows=2400,
        churn_rate=0.3,
        roc_auc=0.8,
        accuracy=0.8,
        lookback_days=30,
        segments=(segment("Two year", 600, 0.05, 0.06), segment("One year", 500, 0.40, 0.20)),
    )
    verdict = DEGRADED.model_copy(
        update={"rules_fired": (PerformanceRule.SEGMENT,), "segments_tested": 2, "segment_z": 3.48}
    )
    html = performance_section(summary(verdict=verdict).model_copy(update={"performance": known}))
    assert "Calibration by segment: the 2 furthest of 2 beyond their noise (2 large enough to be tested)" in html
    assert html.index("Contract=One year") < html.index("Contract=Two year")
    assert "<td>0.200</td><td>0.400</td><td>-0.200</td><td>±0.062</td>" in html  # 3.48 · √(0.2·0.8/500)
    assert "Calibration by segment" not in performance_section(summary(verdict=DEGRADED))
