"""Every object name in the bucket, its time stamp, and the refusal of ids that would escape their prefix."""

from datetime import UTC, date, datetime

import pytest

from churnflow.storage import layout

WHEN = datetime(2026, 11, 5, 14, 3, 7, 123456, tzinfo=UTC)


def test_time_stamps_format_and_parse_back():
    assert layout.format_time(WHEN) == "20261105T140307Z"
    assert layout.format_time(WHEN, microseconds=True) == "20261105T140307123456Z"
    assert layout.parse_time("20261105T140307123456Z") == WHEN
    assert layout.parse_time("20261105T140307Z") == WHEN.replace(microsecond=0)


@pytest.mark.parametrize(
    "text", ["", "20261105T140307", "20261105T140307Z\n", "20261105T1403Z", "x20261105T140307Z", "20261305T140307Z"]
)
def test_parse_time_refuses_anything_else(text):
    with pytest.raises(ValueError):
        layout.parse_time(text)


def test_gs_uris_split_and_join():
    assert layout.gs_uri("b", "a/c.json") == "gs://b/a/c.json"
    assert layout.parse_gs_uri("gs://b/a/c.json") == ("b", "a/c.json")
    assert layout.mlflow_artifacts_uri("b") == "gs://b/mlflow"
    for bad in ("s3://b/x", "gs://b", "gs://b/", "gs:///x"):
        with pytest.raises(ValueError):
            layout.parse_gs_uri(bad)


def test_data_request_log_and_label_names():
    assert layout.reference_object("ab12") == "data/reference/ab12.parquet"
    assert layout.request_log_partition(WHEN) == "requests/dt=2026-11-05/hour=14/"
    name = layout.request_log_object(WHEN, "i0-000001")
    assert name == "requests/dt=2026-11-05/hour=14/20261105T140307123456Z-i0-000001.jsonl.gz"
    assert layout.request_log_time(name) == WHEN
    assert layout.request_log_time("requests/dt=2026-11-05/hour=14/notes.txt") is None
    assert layout.labels_object(WHEN, "f00d") == "labels/dt=2026-11-05/20261105T140307Z-f00d.jsonl.gz"


def test_an_imports_labelled_examples_name_their_import_and_its_labels_object():
    key = layout.import_key(WHEN, "f00d")
    assert key == "20261105T140307Z-f00d"
    name = layout.labelled_object(date(2026, 10, 1), key)
    assert name == "labelled/dt=2026-10-01/20261105T140307Z-f00d.parquet"  # the request's day, then the import
    assert layout.labelled_import_key(name) == key
    assert layout.labels_object_of(key) == layout.labels_object(WHEN, "f00d")
    assert layout.labelled_import_key("labelled/dt=2026-10-01/notes.txt") is None
    with pytest.raises(ValueError, match="not a name time stamp"):
        layout.labelled_object(date(2026, 10, 1), "yesterday-f00d")


def test_report_and_state_names():
    check = "20261105T140307Z-0123abcd"
    assert layout.report_object(check) == f"reports/checks/{check}/report.html"
    assert layout.summary_object(check) == f"reports/checks/{check}/summary.json"
    assert (layout.REPORT_INDEX, layout.LATEST_REPORT) == ("reports/index.json", "reports/latest.json")
    assert layout.retrain_state_object("churn") == "state/retrain-churn.json"
    assert layout.RETRAIN_LOCK == "state/retrain-lock.json"
    assert layout.message_record("1234567890") == "state/messages/1234567890.json"
    assert layout.run_record("manual-abc") == "state/retrain-runs/manual-abc.json"
    assert layout.run_record("manual-abc").startswith(layout.RUN_RECORDS_PREFIX)


BUILDERS = {
    "reference": layout.reference_object,
    "request_log": lambda v: layout.request_log_object(WHEN, v),
    "labels": lambda v: layout.labels_object(WHEN, v),
    "labelled": lambda v: layout.labelled_object(WHEN.date(), f"20261105T140307Z-{v}"),
    "labels_of": lambda v: layout.labels_object_of(f"20261105T140307Z-{v}"),
    "report": layout.report_object,
    "summary": layout.summary_object,
    "state": layout.retrain_state_object,
    "message": layout.message_record,
    "run": layout.run_record,
}


@pytest.mark.parametrize("unsafe", ["../x", "..", "a/b", "", ".hidden", "x\n", "a b", "x" * 129, "é"])
@pytest.mark.parametrize("builder", BUILDERS.values(), ids=BUILDERS.keys())
def test_every_builder_refuses_an_unsafe_token(builder, unsafe):
    with pytest.raises(ValueError, match="not a safe object-name token"):
        builder(unsafe)


def test_request_log_partitions_cover_a_window_and_a_day_holds_them():
    start, end = datetime(2026, 11, 5, 12, 30, tzinfo=UTC), datetime(2026, 11, 5, 14, 30, tzinfo=UTC)
    assert layout.request_log_partitions(start, end) == [
        "requests/dt=2026-11-05/hour=12/",
        "requests/dt=2026-11-05/hour=13/",
        "requests/dt=2026-11-05/hour=14/",
    ]
    assert layout.request_log_day(WHEN) == "requests/dt=2026-11-05/"
    assert layout.request_log_partition(WHEN).startswith(layout.request_log_day(WHEN))
