"""The outcome queries on the real stack: DuckDB reading the emulator's objects through gcsfs."""

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from churnflow.core import schema
from churnflow.monitoring.performance import labelled_performance
from churnflow.retraining.recent_data import labelled_traffic
from churnflow.settings import RetrainSettings
from churnflow.storage import gcs, labels, layout, request_log

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def settings(stack_env):
    common = RetrainSettings(bucket=f"outcomes-{uuid.uuid4().hex[:10]}", retrain_max_rows=3, retrain_max_age_days=7)
    gcs.ensure_bucket(common.project, common.bucket)
    return common


def log(settings, when, records, batch="b"):
    name = layout.request_log_object(when, batch)
    gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, name), request_log.encode_batch(records))


def label(settings, when, outcomes):
    parsed = [labels.Label(r, churned, when) for r, churned in outcomes.items()]
    labels.store(settings, parsed, when)


def record(i, when, p=0.5, version=1):
    return {
        "request_id": f"r{i}",
        "ts": when.timestamp() + i,
        "model_version": version,
        **schema.EXAMPLE_CUSTOMER,
        "churn_probability": p,
        "churn_prediction": int(p >= 0.5),
    }


def test_labelled_performance_equals_the_hand_computed_value_and_sklearn(settings):
    p = [0.9, 0.2, 0.6, 0.4, 0.6]
    y = [True, False, False, True, True]
    log(settings, NOW - timedelta(days=2), [record(i, NOW, p[i]) for i in range(5)] + [record(9, NOW, 0.99, 2)])
    log(settings, NOW - timedelta(days=40), [record(7, NOW - timedelta(days=40), 0.1)], "old")
    label(settings, NOW, {f"r{i}": y[i] for i in range(5)} | {"r9": True, "r7": True})

    got = labelled_performance(settings, NOW, model_version=1, lookback_days=30)

    # ranks of p: 0.2→1, 0.4→2, 0.6,0.6→3.5, 0.9→5; positives r0, r3, r4: 5 + 2 + 3.5 = 10.5; U = 10.5 - 6 = 4.5
    assert got.rows == 5 and got.churn_rate == pytest.approx(0.6)
    assert got.roc_auc == pytest.approx(4.5 / 6, abs=1e-12)
    assert abs(got.roc_auc - roc_auc_score(y, p)) < 1e-9
    assert got.accuracy == pytest.approx(3 / 5)  # r0, r1, r4 right
    assert got.mean_probability == pytest.approx(np.mean(p))
    assert got.brier == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))


def test_a_corrupt_object_and_a_corrupt_line_are_skipped_and_counted(settings):
    log(settings, NOW, [record(i, NOW, 0.8) for i in range(3)])
    cut = request_log.encode_batch([record(5, NOW)])
    gcs.write_bytes(
        settings.project, layout.gs_uri(settings.bucket, layout.request_log_object(NOW, "cut")), cut[: len(cut) // 2]
    )
    damaged = request_log.compress(b"{oops\n")
    gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, layout.request_log_object(NOW, "bad")), damaged)
    label(settings, NOW, {"r0": True, "r1": False, "r2": True})

    got = labelled_performance(settings, NOW, model_version=1, lookback_days=1)

    assert (got.rows, got.unreadable_rows, got.skipped_objects) == (3, 1, 1)


def test_retrain_data_is_the_most_recent_labelled_rows_within_cap_and_age(settings):
    log(settings, NOW - timedelta(days=10), [record(0, NOW - timedelta(days=10))], "old")
    log(settings, NOW - timedelta(hours=1), [record(i, NOW - timedelta(hours=1)) for i in range(1, 6)])
    label(settings, NOW - timedelta(hours=1), {f"r{i}": i % 2 == 0 for i in range(0, 5)})  # r5 has no label

    frame = labelled_traffic(settings, NOW)

    assert frame[schema.ID_COLUMN].tolist() == ["r2", "r3", "r4"]  # r0 too old, r1 beyond the cap of 3
    assert frame[schema.TARGET].tolist() == ["Yes", "No", "Yes"]
    assert list(frame.columns) == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET, "ts"]
    assert frame["ts"].is_monotonic_increasing and frame["ts"].dtype == float  # logged time, for the time cut
    assert frame["tenure"].dtype == int
