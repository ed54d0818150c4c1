"""The MLflow metrics of a check: every performance rule that fired, and the numbers it compared (pure)."""

from churnflow.monitoring.models import CheckStatus, CheckSummary, PerformanceDecision, PerformanceRule, WindowStats
from churnflow.monitoring.tracking import summary_metrics

WINDOW = WindowStats.model_construct(valid_rows=2400, tested_rows=2400, bad_lines=0, bad_rows=0, corrupt_objects=0)


def test_the_segment_and_reliability_tests_are_logged_by_name_with_their_numbers():
    verdict = PerformanceDecision(
        decided=True,
        degraded=True,
        rules_fired=(PerformanceRule.SEGMENT, PerformanceRule.RELIABILITY),
        reason="…",
        labels=2400,
        z=3.09,
        segments_tested=41,
        segment_z=4.1,
        worst_segment="SeniorCitizen=1",
        segment_gap=-0.18,
        segment_bound=0.14,
        reliability_gap=0.031,
        reliability_bound=0.021,
    )
    checked = CheckSummary.model_construct(
        status=CheckStatus.NO_DRIFT,
        window=WINDOW,
        drift=None,
        decision=None,
        performance=None,
        performance_decision=verdict,
    )
    metrics = summary_metrics(checked)
    assert metrics["rule.labelled_segment_calibration"] == 1.0 and metrics["rule.labelled_reliability"] == 1.0
    assert "rule.labelled_auc" not in metrics
    assert metrics["performance.segments_tested"] == 41.0
    assert (metrics["performance.segment_gap"], metrics["performance.segment_bound"]) == (-0.18, 0.14)
    assert (metrics["performance.reliability_gap"], metrics["performance.reliability_bound"]) == (0.031, 0.021)
