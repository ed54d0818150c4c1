"""The request-log reader against the real GCS emulator: list a window or a prefix, read all, read a sample."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from churnflow.core import schema
from churnflow.storage import gcs, layout, request_log
from churnflow.storage.request_log import Window
from churnflow.storage.request_log_reader import RequestLogReader

pytestmark = pytest.mark.integration
PROJECT = "churnflow-test"
NOW = datetime(2026, 11, 5, 14, 30, tzinfo=UTC)


def record(i, **changes):
    return {
        "request_id": f"r{i}",
        "ts": 1.5 + i,
        "model_version": 2,
        **schema.EXAMPLE_CUSTOMER,
        "tenure": i % 70,
        "churn_probability": 0.25,
        "churn_prediction": 0,
        "latency_ms": 0.1,
        **changes,
    }


@pytest.fixture
def reader(stack_env):
    """A fresh bucket holding 6 batches of 100 rows, one every 20 minutes from 13:00, plus one stray object."""
    bucket = f"reader-{uuid.uuid4().hex[:10]}"
    gcs.ensure_bucket(PROJECT, bucket)
    for batch in range(6):
        when = NOW.replace(hour=13, minute=0) + timedelta(minutes=20 * batch)
        body = request_log.encode_batch(record(100 * batch + i) for i in range(100))
        gcs.write_bytes(PROJECT, layout.gs_uri(bucket, layout.request_log_object(when, f"b{batch}")), body)
    stray = layout.request_log_partition(NOW) + "README.txt"
    gcs.write_bytes(PROJECT, layout.gs_uri(bucket, stray), b"not a batch")
    return RequestLogReader(PROJECT, bucket, workers=4)


def put(reader, name, body):
    gcs.write_bytes(PROJECT, layout.gs_uri(reader.bucket, name), body)


def test_a_window_lists_the_batches_named_inside_it(reader):
    listing = reader.list_objects(Window(NOW - timedelta(minutes=50), NOW))
    assert [o.name.rsplit("-", 1)[-1] for o in listing.objects] == ["b2.jsonl.gz", "b3.jsonl.gz", "b4.jsonl.gz"]
    assert all(o.size > 0 for o in listing.objects) and listing.unnamed == 1


def test_a_corrupt_object_and_bad_lines_are_skipped_and_counted(reader):
    data = request_log.encode_batch(record(1000 + i) for i in range(50))
    put(reader, layout.request_log_object(NOW - timedelta(minutes=5), "cut"), data[: len(data) // 2])
    damaged = request_log.compress(b'{"request_id": "x"}\n{oops\n')
    put(reader, layout.request_log_object(NOW - timedelta(minutes=4), "bad"), damaged)
    window = Window(NOW - timedelta(minutes=6), NOW)
    sample = reader.read_sample(window, rows=1000, objects=64, seed=0)
    assert (sample.objects, sample.corrupt_objects, sample.bad_lines, sample.bad_rows) == (2, 1, 1, 1)


def test_a_small_window_is_read_whole(reader):
    sample = reader.read_sample(Window(NOW - timedelta(hours=2), NOW), rows=10_000, objects=64, seed=0)
    assert len(sample.frame) == 500 and not sample.sampled and sample.unnamed_objects == 1
    assert sample.model_versions == {2: 500} and sample.design_effect == 1.0


def test_a_large_window_is_sampled_the_same_way_for_the_same_seed(reader):
    window = Window(NOW - timedelta(hours=2), NOW)
    sample = reader.read_sample(window, rows=100, objects=2, seed=7)
    assert sample.sampled and sample.objects == 5 and sample.objects_read == 2
    assert sample.lines == pytest.approx(500, rel=0.05) and 100 <= len(sample.frame) <= 102
    again = reader.read_sample(window, rows=100, objects=2, seed=7)
    assert again.frame.equals(sample.frame)
