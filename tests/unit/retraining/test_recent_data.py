"""Logged requests with a known outcome become training rows: cleaned, deduplicated, labelled Yes/No."""

from churnflow.core import schema
from churnflow.retraining.recent_data import labelled_frame


def record(i, **changes):
    return {"request_id": f"r{i}", "model_version": 1, **schema.EXAMPLE_CUSTOMER, "tenure": i, **changes}


def test_only_labelled_requests_become_rows_once_each():
    records = [record(0), record(1), record(2), record(0, tenure=50)]
    frame = labelled_frame(records, {"r0": True, "r2": False, "r9": True})
    assert list(frame.columns) == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET]
    assert frame[schema.ID_COLUMN].tolist() == ["r0", "r2"] and frame["tenure"].tolist() == [0, 2]
    assert frame[schema.TARGET].tolist() == [schema.TARGET_POSITIVE, "No"]


def test_no_labelled_request_gives_an_empty_frame():
    assert labelled_frame([record(0)], {}).empty
