"""Request-log batches round-trip; damage is counted or raised, never silently dropped."""

import gzip
from datetime import UTC, datetime

import pytest

from churnflow.core import schema
from churnflow.storage import request_log


def record(i):
    return {
        "request_id": f"r{i}",
        "ts": 1.5 + i,
        "model_version": 1,
        **schema.EXAMPLE_CUSTOMER,
        "churn_probability": 0.25,
        "churn_prediction": 0,
        "latency_ms": 0.1,
        "instance": "0123456789abcdef",
        "seq": i + 1,
    }


def test_round_trip_keeps_every_field():
    batch = [record(i) for i in range(100)]
    decoded = request_log.decode_batch(request_log.encode_batch(batch))
    assert decoded.records == batch and decoded.bad_lines == 0
    assert set(decoded.records[0]) == set(request_log.RECORD_FIELDS)


def test_bad_lines_are_counted():
    lines = request_log.encode_batch([record(1)])
    damaged = gzip.compress(gzip.decompress(lines) + b"{not json\n[1, 2]\n")
    decoded = request_log.decode_batch(damaged)
    assert len(decoded.records) == 1 and decoded.bad_lines == 2


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_object_raises(cut):
    data = request_log.encode_batch([record(i) for i in range(500)])
    with pytest.raises(request_log.CorruptLogObject):
        request_log.decode_batch(data[: int(len(data) * cut)])


def test_a_window_is_half_open():
    start, end = datetime(2026, 11, 5, 13, tzinfo=UTC), datetime(2026, 11, 5, 14, tzinfo=UTC)
    window = request_log.Window(start, end)
    assert window.contains(start) and not window.contains(end)
