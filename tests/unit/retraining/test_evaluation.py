"""Retrain data: the out-of-time split by logged time, the base weights, the metrics (pure)."""

import math

import numpy as np
import pandas as pd
import pytest

from churnflow.core import schema
from churnflow.retraining.evaluation import assemble, base_row_weight, metrics_of, out_of_time_split


@pytest.fixture(scope="module")
def recent(dataset):
    """1000 real rows as labelled traffic, one request every 10 s, shuffled so that row order is not time."""
    rows = dataset.sample(1000, random_state=0).reset_index(drop=True)
    rows[schema.ID_COLUMN] = [f"req-{i:04d}" for i in range(len(rows))]
    rows["ts"] = 1_700_000_000.0 + 10.0 * np.arange(len(rows))
    return rows.sample(frac=1.0, random_state=1).reset_index(drop=True)


def test_the_out_of_time_rows_are_the_newest_by_logged_time(recent):
    older, newest = out_of_time_split(recent, 0.3, trained_until=None)
    assert len(newest) == 300 and len(older) == 700
    assert newest["ts"].min() > older["ts"].max()
    assert older["ts"].is_monotonic_increasing and newest["ts"].is_monotonic_increasing
    assert set(older[schema.ID_COLUMN]).isdisjoint(newest[schema.ID_COLUMN])


def test_no_row_an_earlier_version_trained_on_is_ever_evaluated(recent):
    # an earlier version trained on the rows logged up to its cut: they may be trained on again, never evaluated
    first_train, _ = out_of_time_split(recent.iloc[:600], 0.3, trained_until=None)
    trained_until = first_train["ts"].max()
    later = pd.concat([recent, recent.iloc[:0]])  # the whole recent traffic, 400 rows newer than before
    _, newest = out_of_time_split(later, 0.9, trained_until=trained_until)  # asks for 900 rows
    assert set(newest[schema.ID_COLUMN]).isdisjoint(first_train[schema.ID_COLUMN])
    assert newest["ts"].min() > trained_until and len(newest) < 900


def test_requests_logged_at_the_same_instant_stay_on_one_side_of_the_cut(recent):
    tied = recent.assign(ts=(recent["ts"] // 1000) * 1000)  # 100 requests share each stamp
    older, newest = out_of_time_split(tied, 0.25, trained_until=None)
    assert newest["ts"].min() > older["ts"].max()


def test_without_logged_times_the_row_order_stands_in(recent):
    ordered = recent.sort_values("ts").drop(columns="ts").reset_index(drop=True)
    older, newest = out_of_time_split(ordered, 0.3, trained_until=None)
    assert newest[schema.ID_COLUMN].tolist() == ordered[schema.ID_COLUMN].tolist()[-300:]
    assert len(older) == 700


def test_base_rows_weigh_a_share_of_the_recent_rows_and_never_more_than_one():
    assert base_row_weight(4000, 1000, 0.25) == pytest.approx(0.0625)
    assert base_row_weight(4000, 100_000, 0.25) == 1.0
    assert base_row_weight(4000, 0, 0.25) == 1.0


def test_assemble_trains_on_weighted_base_and_older_recent_rows(dataset, recent):
    parts = assemble(dataset, recent, 0.3, None, 0.25, test_size=0.2, seed=42)
    assert len(parts.train) == parts.base_train_rows + 700 == len(parts.weights)
    assert parts.weights[: parts.base_train_rows].sum() == pytest.approx(0.25 * 700)
    assert (parts.weights[parts.base_train_rows :] == 1).all()
    assert len(parts.base_check) == round(0.2 * len(dataset)) and len(parts.out_of_time) == 300
    bounds = parts.bounds()
    assert bounds["train_last"] < bounds["oot_cut"] <= bounds["oot_last"]
    assert set(parts.base_check[schema.ID_COLUMN]).isdisjoint(parts.train.get(schema.ID_COLUMN, []))


def test_metrics_of_probabilities():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.4])
    got = metrics_of(y, p)
    assert got["roc_auc"] == 1.0 and got["accuracy"] == 1.0 and got["rows"] == 4.0
    assert got["brier"] == pytest.approx((0.01 + 0.04 + 0.16 + 0.16) / 4)
    assert got["mean_probability"] == pytest.approx(0.525) and got["churn_rate"] == 0.5
    assert math.isnan(metrics_of(np.array([1, 1]), np.array([0.5, 0.6]))["roc_auc"])
    assert metrics_of(np.array([]), np.array([]))["rows"] == 0.0
