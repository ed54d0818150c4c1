"""The closed loop on the real local stack, exactly as `make demo` runs it, with its outcome asserted."""

import pytest

from churnflow.local import stack
from churnflow.monitoring.models import CheckStatus
from churnflow.sim import demo

pytestmark = pytest.mark.e2e


@pytest.fixture
def loop_stack(tmp_path):
    """A private stack on free ports with every service, stopped after the test."""
    from conftest import free_ports

    ports = dict(
        zip(
            ("gcs", "pubsub", "mlflow", "predict", "monitor", "trigger", "scheduler", "dashboard"),
            free_ports(8),
            strict=True,
        )
    )
    local = demo.demo_settings().model_copy(
        update={"state_dir": tmp_path / "stack", **{f"{name}_port": port for name, port in ports.items()}}
    )
    common = demo.CommonSettings(bucket="churnflow-e2e", CHURNFLOW_PROJECT="churnflow-e2e")
    try:
        yield local, common
    finally:
        stack.down(local)


def test_drift_retrain_promotion_and_hot_swap(loop_stack):
    local, common = loop_stack
    lines = []
    result = demo.run_loop(local, common, demo.Timeline(lines.append))

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
