"""The closed loop on the real local stack, exactly as `make demo` runs it, with its outcome asserted."""

import pytest

from churnflow.local import stack
from churnflow.monitoring.models import CheckStatus
from churnflow.settings import CommonSettings
from churnflow.sim import demo
from conftest import free_ports
from fixtures_demo import SERVICES

pytestmark = pytest.mark.e2e


@pytest.fixture
def outcome_stack(tmp_path):
    """A private stack on free ports with every service, for the outcome story; stopped after the test."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    local = demo.demo_settings().model_copy(
        update={"state_dir": tmp_path / "stack", **{f"{n}_port": p for n, p in ports.items()}}
    )
    common = CommonSettings(bucket="churnflow-e2e-outcome", CHURNFLOW_PROJECT="churnflow-e2e")
    try:
        yield local, common
    finally:
        stack.down(local)


def test_drift_retrain_promotion_and_hot_swap(demo_run):
    result, lines = demo_run.result, demo_run.lines

    decided = [c for c in result.checks if c.status is not CheckStatus.INSUFFICIENT_DATA]
    assert decided[0].status is CheckStatus.NO_DRIFT and decided[0].champion_version == 1
    triggered = result.checks[-1]
    assert [c.trigger.action for c in result.checks].count("published") == 1
    assert triggered.trigger.action == "published" and triggered.retrain_rules
    # whichever rule saw the change first: drift on the window, or performance on the arrived labels (a check
    # whose window had not yet settled can still see the labels)
    assert triggered.status is CheckStatus.DRIFT or triggered.performance_decision.degraded
    assert triggered.performance is not None and triggered.performance.rows > 1000  # labels had arrived
    assert result.job_runs == 1
    assert result.retrain_status == "promoted" and result.promoted_version == 2
    assert set(result.versions_served) == {1, 2} and result.versions_served[2] > 0
    assert result.failed_requests == []
    assert result.predict_pid_before == result.predict_pid_after
    assert result.loop_seconds is not None and result.loop_seconds > 0
    assert any("PROMOTED" in line for line in lines)
    assert any(result.urls["drift history"] in line for line in lines)


def test_a_change_in_who_churns_is_caught_by_the_performance_rule_and_retrained_on_recent_data(outcome_stack):
    local, common = outcome_stack
    lines = []
    result = demo.run_loop(local, common, demo.Timeline(lines.append), demo.OUTCOME_STORY)

    decided = [c for c in result.checks if c.status is not CheckStatus.INSUFFICIENT_DATA]
    triggered = result.checks[-1]
    assert all(c.status is CheckStatus.NO_DRIFT for c in decided)  # the inputs never moved
    assert triggered.trigger.action == "published" and triggered.performance_decision.degraded
    assert triggered.retrain_rules and all(rule.startswith("labelled_") for rule in triggered.retrain_rules)
    assert triggered.performance.rows >= 2000 and triggered.performance_decision.labels >= 2000
    assert result.job_runs == 1 and result.retrain is not None
    assert result.retrain.challenger_oot["rows"] >= 700  # the newest 30 % of the labelled requests
    assert result.retrain.oot_cut_ts is not None and result.retrain.gate_checks["oot_brier"] is True
    assert result.retrain_status == "promoted" and result.promoted_version == 2
    assert result.retrain.challenger_oot["brier"] < result.retrain.champion_oot["brier"]
    assert result.failed_requests == []
    assert any("performance rules fired: labelled_" in line for line in lines)
    assert any("out-of-time rows" in line for line in lines)
