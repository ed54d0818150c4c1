"""`ops.status`: an aliased version's metrics from its tags, and a source that does not answer in time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from churnflow.ops import status
from churnflow.registry import tags
from churnflow.registry.read import ModelVersion


def test_version_status_reads_metrics_and_the_gate_from_the_version_tags():
    version = ModelVersion(
        name="churn",
        version=3,
        run_id="r3",
        source="",
        tags={
            f"{tags.METRIC_PREFIX}roc_auc": "0.842100",
            f"{tags.METRIC_PREFIX}accuracy": "0.806000",
            tags.GATE_DECISION: "reject",
            tags.GATE_REASON: "AUC 0.80 < 0.81",
            tags.DATA_FINGERPRINT: "abc",
        },
        aliases=("challenger",),
        created_at_ms=1_764_500_000_000,
    )
    shown = status.version_status("challenger", version)
    assert shown.metrics == {"roc_auc": 0.8421, "accuracy": 0.806}
    assert (shown.version, shown.gate_decision, shown.gate_reason) == (3, "reject", "AUC 0.80 < 0.81")
    assert shown.created_at == datetime.fromtimestamp(1_764_500_000, UTC)


def test_a_source_that_does_not_answer_in_time_is_a_timeout_not_a_hang():
    release = threading.Event()
    with pytest.raises(TimeoutError, match="no answer within 0.05s"):
        status.within(0.05, release.wait)
    release.set()
    assert status.within(1.0, lambda: 42) == 42
    with pytest.raises(ValueError, match="boom"):
        status.within(1.0, lambda: int("boom"))
