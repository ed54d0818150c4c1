"""The monitor's and the retrain's outcome queries on the real stack: labels imported through the real
import (DuckDB over the emulator's objects), then read back from the labelled examples only."""

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from churnflow.core import schema
from churnflow.monitoring.performance import labelled_performance
from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.label_import import import_labels
from churnflow.outcomes.labelled import recent_labelled
from churnflow.retraining.recent_data import labelled_traffic
from churnflow.settings import RetrainSettings
from churnflow.storage import gcs, layout, request_log

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


def label(settings, when, outcomes, tmp_path):
    path = tmp_path / f"labels-{uuid.uuid4().hex[:6]}.csv"
    rows = "".join(f"{r},{'yes' if churned else 'no'},{when.isoformat()}\n" for r, churned in outcomes.items())
    path.write_text("request_id,churned,observed_at\n" + rows)
    return import_labels(settings, path, when)


def record(i, when, p=0.5, version=1):
    return {
        "request_id": f"r{i}",
        "ts": when.timestamp() + i,
        "model_version": version,
        **schema.EXAMPLE_CUSTOMER,
        "tenure": i,
        "churn_probability": p,
        "churn_prediction": int(p >= 0.5),
    }


def test_labelled_performance_equals_the_hand_computed_value_and_sklearn(settings, tmp_path):
    p = [0.9, 0.2, 0.6, 0.4, 0.6]
    y = [True, False, False, True, True]
    log(settings, NOW - timedelta(days=2), [record(i, NOW, p[i]) for i in range(5)] + [record(9, NOW, 0.99, 2)])
    log(settings, NOW - timedelta(days=40), [record(7, NOW - timedelta(days=40), 0.1)], "old")
    long_ago = RetrainSettings(bucket=settings.bucket, labels_max_request_age_days=60)
    label(long_ago, NOW, {f"r{i}": y[i] for i in range(5)} | {"r9": True, "r7": True}, tmp_path)

    got = labelled_performance(settings, NOW, model_version=1, lookback_days=30)

    # ranks of p: 0.2→1, 0.4→2, 0.6,0.6→3.5, 0.9→5; positives r0, r3, r4: 5 + 2 + 3.5 = 10.5; U = 10.5 - 6 = 4.5
    assert got.rows == 5 and got.churn_rate == pytest.approx(0.6)
    assert got.roc_auc == pytest.approx(4.5 / 6, abs=1e-12)
    assert abs(got.roc_auc - roc_auc_score(y, p)) < 1e-9
    assert got.accuracy == pytest.approx(3 / 5)  # r0, r1, r4 right
    assert got.mean_probability == pytest.approx(np.mean(p))
    assert got.brier == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))
    assert (got.unreadable_rows, got.skipped_objects) == (0, 0)


def test_labelled_segments_and_reliability_equal_hand_computed_values(settings, tmp_path):
    p = [0.9, 0.2, 0.6, 0.4, 0.05]
    y = [True, False, False, True, False]
    contract = ["Month-to-month", "Month-to-month", "One year", "One year", "Two year"]
    records = [record(i, NOW, p[i]) | {"Contract": contract[i]} for i in range(5)]
    log(settings, NOW - timedelta(days=1), [*records, record(9, NOW, 0.99, 2) | {"Contract": "Two year"}])
    label(settings, NOW, {f"r{i}": y[i] for i in range(5)} | {"r9": True}, tmp_path)

    got = labelled_performance(settings, NOW, model_version=1, lookback_days=30)

    segments = {s.name: s for s in got.segments}
    one_year = segments["Contract=One year"]  # r2 (0.6, no) and r3 (0.4, yes)
    assert (one_year.rows, one_year.observed_rate, one_year.predicted_rate) == (2, 0.5, pytest.approx(0.5))
    assert one_year.standard_error == pytest.approx(np.sqrt(0.6 * 0.4 + 0.4 * 0.6) / 2)
    two_year = segments["Contract=Two year"]  # r4 only: r9 is another model's request
    assert (two_year.rows, two_year.observed_rate, two_year.predicted_rate) == (1, 0.0, pytest.approx(0.05))
    assert segments["probability_bin=[0.6, 0.7)"].rows == 1 and segments["probability_bin=[0.9, 1.0]"].rows == 1
    assert segments["probability_bin=[0.0, 0.1)"].predicted_rate == pytest.approx(0.05)
    assert segments["gender=Female"].rows == 5  # every record is the example customer otherwise
    # Spiegelhalter: Σ(y − p)(1 − 2p) = 0.1·(−0.8) + (−0.2)·0.6 + (−0.6)·(−0.2) + 0.6·0.2 + (−0.05)·0.9 = −0.005
    assert got.reliability_gap == pytest.approx(-0.005 / 5)
    variance = sum((1 - 2 * q) ** 2 * q * (1 - q) for q in p)
    assert got.reliability_se == pytest.approx(np.sqrt(variance) / 5)


def test_a_later_import_overrides_and_an_uncommitted_one_is_not_counted(settings, tmp_path):
    log(settings, NOW - timedelta(hours=3), [record(i, NOW - timedelta(hours=3), 0.8) for i in range(3)])
    label(settings, NOW - timedelta(hours=2), {"r0": False, "r1": False, "r2": False}, tmp_path)
    later = label(settings, NOW - timedelta(hours=1), {"r0": True}, tmp_path)
    assert labelled_performance(settings, NOW, 1, 1).churn_rate == pytest.approx(1 / 3)

    gcs.delete_object(settings.project, settings.bucket, layout.parse_gs_uri(later.uri)[1])  # never committed

    assert labelled_performance(settings, NOW, 1, 1).churn_rate == 0


def test_retrain_data_is_the_most_recent_labelled_rows_within_cap_and_age(settings, tmp_path):
    log(settings, NOW - timedelta(days=10), [record(0, NOW - timedelta(days=10))], "old")
    log(settings, NOW - timedelta(hours=1), [record(i, NOW - timedelta(hours=1), version=2) for i in range(1, 6)])
    label(settings, NOW - timedelta(hours=1), {f"r{i}": i % 2 == 0 for i in range(0, 5)}, tmp_path)  # not r5

    frame = labelled_traffic(settings, NOW)
    table = recent_labelled(open_engine(settings), NOW - timedelta(days=7), NOW.date(), 3)

    assert frame[schema.ID_COLUMN].tolist() == ["r2", "r3", "r4"]  # r0 too old, r1 beyond the cap of 3
    assert frame[schema.TARGET].tolist() == ["Yes", "No", "Yes"]
    assert list(frame.columns) == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET, "ts"]
    assert frame["ts"].is_monotonic_increasing and frame["ts"].dtype == float  # logged time, for the time cut
    assert frame["ts"].tolist() == table.column("ts").to_pylist()
    assert frame["tenure"].tolist() == [2, 3, 4] and frame["tenure"].dtype == int
    assert table.column_names == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET, "ts", "model_version"]
    start = (NOW - timedelta(hours=1)).timestamp()
    assert table.column("ts").to_pylist() == [start + 2, start + 3, start + 4]
    assert table.column("model_version").to_pylist() == [2, 2, 2]


def test_labels_from_a_users_own_query_replace_the_imported_ones(settings, tmp_path):
    log(settings, NOW - timedelta(hours=1), [record(i, NOW - timedelta(hours=1), 0.7) for i in range(4)])
    outcomes = tmp_path / "warehouse.csv"
    outcomes.write_text("request_id,churned,observed_at\nr0,true,2026-11-19\nr1,false,2026-11-19\n")
    query = f"SELECT request_id, churned, observed_at FROM read_csv('{outcomes}')"
    warehouse = RetrainSettings(bucket=settings.bucket, labels_source=query)

    got = labelled_performance(warehouse, NOW, model_version=1, lookback_days=1)

    assert (got.rows, got.churn_rate, got.accuracy) == (2, 0.5, 0.5)
