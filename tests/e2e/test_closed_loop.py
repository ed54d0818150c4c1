"""The closed loop on the real local stack, exactly as `make demo` runs it, with its outcome asserted."""

import pytest

from churnflow.monitoring.models import CheckStatus

pytestmark = pytest.mark.e2e


def test_drift_retrain_promotion_and_hot_swap(demo_run):
    result, lines = demo_run.result, demo_run.lines

    decided = [c for c in result.checks if c.status is not CheckStatus.INSUFFICIENT_DATA]
    assert decided[0].status is CheckStatus.NO_DRIFT and decided[0].champion_version == 1
    assert decided[-1].status is CheckStatus.DRIFT and decided[-1].trigger.action == "published"
    assert [c.status for c in decided].count(CheckStatus.DRIFT) == 1
    assert decided[-1].performance is not None and decided[-1].performance.rows > 1000  # labels had arrived
    assert result.job_runs == 1
    assert result.retrain_status == "promoted" and result.promoted_version == 2
    assert set(result.versions_served) == {1, 2} and result.versions_served[2] > 0
    assert result.failed_requests == []
    assert result.predict_pid_before == result.predict_pid_after
    assert result.loop_seconds is not None and result.loop_seconds > 0
    assert any("PROMOTED" in line for line in lines)
    assert any(result.urls["drift history"] in line for line in lines)
