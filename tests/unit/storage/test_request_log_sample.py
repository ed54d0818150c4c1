"""Two-stage sampling of a request-log window: object choice, sampled decoding, damage counting, design effect."""

import gzip
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from churnflow.core import schema
from churnflow.storage import request_log
from churnflow.storage import request_log_sample as sampling
from churnflow.storage.request_log import Window

NOW = datetime(2026, 11, 5, 14, 30, tzinfo=UTC)


def record(i, **changes):
    return {
        "request_id": f"r{i}",
        "ts": 1.5 + i,
        "model_version": 3,
        **schema.EXAMPLE_CUSTOMER,
        "tenure": i % 70,
        "churn_probability": 0.25,
        "churn_prediction": 0,
        "latency_ms": 0.1,
        **changes,
    }


def test_allocation_is_proportional_to_size():
    assert sampling.allocate([100, 300, 600], 1000) == [100, 300, 600]
    assert sampling.allocate([1, 2], 10) == [4, 7]
    assert sampling.allocate([], 10) == [] and sampling.allocate([0, 0], 10) == [0, 0]


def test_sample_object_decodes_every_line_under_its_quota():
    sample = sampling.sample_object(
        request_log.encode_batch([record(i) for i in range(50)]), 100, np.random.default_rng(0)
    )
    assert (sample.lines, sample.parsed, len(sample.rows), sample.bad_lines, sample.bad_rows) == (50, 50, 50, 0, 0)
    assert [row.tenure for row in sample.rows] == [i % 70 for i in range(50)]


def test_sample_object_draws_its_quota_without_replacement():
    batch = [record(i, MonthlyCharges=i / 10) for i in range(1000)]
    sample = sampling.sample_object(request_log.encode_batch(batch), 100, np.random.default_rng(1))
    charges = [row.MonthlyCharges for row in sample.rows]
    assert sample.lines == 1000 and sample.parsed == 100 and len(set(charges)) == 100
    assert max(charges) > 90 and min(charges) < 10  # spread over the object, not its first lines


def test_bad_lines_and_rows_are_counted_not_raised():
    lines = [orjson.dumps(record(0)), b"{not json", orjson.dumps(record(1, Contract="Weekly"))]
    lines += [orjson.dumps(record(2, tenure=-4)), orjson.dumps({"model_version": 1}), b"", b"[1, 2]"]
    sample = sampling.sample_object(gzip.compress(b"\n".join(lines) + b"\n"), 100, np.random.default_rng(0))
    assert sample.lines == 6 and len(sample.rows) == 1
    assert sample.bad_lines == 1 and sample.bad_rows == 4  # a JSON array is valid JSON but not a record


@pytest.mark.parametrize("cut", [0.3, 0.95])
def test_truncated_object_is_marked_corrupt(cut):
    data = request_log.encode_batch([record(i) for i in range(300)])
    sample = sampling.sample_object(data[: int(len(data) * cut)], 100, np.random.default_rng(0))
    assert sample.corrupt and sample.rows == [] and sample.lines == 0


def test_choose_objects_takes_one_per_time_slice():
    rng = np.random.default_rng(0)
    assert sampling.choose_objects(5, 8, rng) == [0, 1, 2, 3, 4]
    chosen = sampling.choose_objects(1000, 64, rng)
    assert len(chosen) == 64 and chosen == sorted(chosen) and len(set(chosen)) == 64
    bounds = np.linspace(0, 1000, 65).astype(int)
    assert all(low <= c < high for c, low, high in zip(chosen, bounds[:-1], bounds[1:], strict=True))


def test_combine_builds_typed_features_and_totals():
    rng = np.random.default_rng(0)
    samples = [
        sampling.sample_object(request_log.encode_batch([record(i) for i in range(400)]), 100, rng),
        sampling.sample_object(request_log.encode_batch([record(i) for i in range(100)]), 100, rng),
        sampling.ObjectSample(size=1234, corrupt=True),
    ]
    span = Window(NOW - timedelta(hours=1), NOW)
    total = sum(s.size for s in samples)
    combined = sampling.combine(span, samples, objects=3, bytes_total=total, unnamed_objects=2)
    assert list(combined.frame.columns) == list(schema.FEATURE_NAMES) and len(combined.frame) == 200
    assert combined.frame["tenure"].dtype == np.int64 and combined.frame["SeniorCitizen"].dtype == np.int64
    assert combined.frame["MonthlyCharges"].dtype == np.float64 and combined.frame["Contract"].dtype == object
    assert combined.row_objects.tolist() == [0] * 100 + [1] * 100
    assert (combined.objects, combined.objects_read, combined.corrupt_objects, combined.unnamed_objects) == (3, 3, 1, 2)
    assert (combined.lines, combined.parsed, combined.valid_rows) == (500, 200, 500)
    assert combined.sampled and combined.design_effect == 1.0 and combined.model_versions == {3: 200}


def test_lines_are_extrapolated_by_size_when_objects_are_skipped():
    batch = request_log.encode_batch([record(i) for i in range(200)])
    sample = sampling.sample_object(batch, 50, np.random.default_rng(0))
    combined = sampling.combine(Window(NOW, NOW), [sample], objects=10, bytes_total=10 * len(batch))
    assert (combined.lines, combined.valid_rows, combined.objects_read) == (2000, 2000, 1)


def test_valid_rows_scale_the_sampled_share_of_good_rows():
    good = [orjson.dumps(record(i)) for i in range(900)]
    bad = [orjson.dumps(record(i, gender="?")) for i in range(100)]
    data = gzip.compress(b"\n".join(good + bad))
    sample = sampling.sample_object(data, 1000, np.random.default_rng(0))
    combined = sampling.combine(Window(NOW, NOW), [sample], objects=1, bytes_total=len(data))
    assert combined.valid_rows == 900 and combined.bad_rows == 100 and not combined.sampled


def frame_of(rows):
    return pd.DataFrame([{name: row[name] for name in schema.FEATURE_NAMES} for row in rows])


def test_design_effect_is_near_one_for_alike_objects_and_large_for_different_ones():
    rng = np.random.default_rng(5)
    contracts = rng.choice(["Month-to-month", "Two year"], 4000)
    alike = frame_of(record(i, tenure=int(rng.integers(0, 72)), Contract=str(contracts[i])) for i in range(4000))
    objects = np.repeat(np.arange(40), 100)
    assert sampling.design_effect(alike, objects, read_fraction=0.1) < 2.0
    # Each object holds one contract type only: the objects differ as much as they can.
    split = alike.assign(Contract=np.where(objects % 2 == 0, "Month-to-month", "Two year"))
    assert sampling.design_effect(split, objects, read_fraction=0.1) > 50
    assert sampling.design_effect(split, objects, read_fraction=1.0) == 1.0
