"""Label imports against the real GCS emulator: validated in DuckDB, joined once with the logged requests
they name (the request log read through the engine, newest days first) and stored whole or not at all."""

import gzip
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow.parquet as pq
import pytest

from churnflow.core import schema
from churnflow.outcomes import label_import, tables
from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.label_import import import_labels
from churnflow.outcomes.labelled import recent_labelled
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, labels, layout, request_log

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


def log(settings, when, ids, batch="batch", p=0.25):
    records = [
        {
            "request_id": i,
            "ts": when.timestamp() + n,
            "model_version": 1,
            **schema.EXAMPLE_CUSTOMER,
            "churn_probability": p,
            "churn_prediction": 0,
        }
        for n, i in enumerate(ids)
    ]
    name = layout.request_log_object(when, batch)
    gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, name), request_log.encode_batch(records))


@pytest.fixture
def settings(stack_env):
    """A fresh bucket whose request log holds requests r0..r3, logged at NOW."""
    common = CommonSettings(bucket=f"labels-{uuid.uuid4().hex[:10]}", labels_max_request_age_days=5)
    gcs.ensure_bucket(common.project, common.bucket)
    log(common, NOW, [f"r{i}" for i in range(4)])
    return common


def labels_file(tmp_path, rows, observed="2026-11-20"):
    path = tmp_path / f"labels-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("request_id,churned,observed_at\n" + "".join(f"{r},{c},{observed}\n" for r, c in rows))
    return path


def outcomes(settings):
    frame = recent_labelled(open_engine(settings), NOW - timedelta(days=30), NOW.date(), 100).to_pandas()
    return dict(zip(frame[schema.ID_COLUMN], frame[schema.TARGET] == schema.TARGET_POSITIVE, strict=True))


def stored(settings, prefix):
    return gcs.list_names(settings.project, settings.bucket, prefix)


def test_an_import_stores_its_labels_and_examples_and_a_later_one_overrides(settings, tmp_path):
    first = import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("r1", "no")]), NOW)
    assert first.labels == 2 and first.uri.startswith(f"gs://{settings.bucket}/labels/dt=2026-11-20/")
    assert first.days_scanned == 1  # every id was logged on the import day: no older day was read
    [example] = first.examples
    assert example.startswith(f"gs://{settings.bucket}/labelled/dt=2026-11-20/") and example.endswith(".parquet")
    path = tmp_path / "example.parquet"
    gcs.download_file(settings.project, example, str(path))
    written = pq.read_table(path)
    assert written.schema == tables.arrow_schema("labelled")
    assert sorted(written.column("request_id").to_pylist()) == ["r0", "r1"]
    assert set(written.column("churn_probability").to_pylist()) == {0.25}

    import_labels(settings, labels_file(tmp_path, [("r1", "yes")]), NOW + timedelta(hours=1))

    assert outcomes(settings) == {"r0": True, "r1": True}


def test_every_bad_row_is_named_and_nothing_is_stored(settings, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "request_id,churned,observed_at\n"
        "r0,maybe,yesterday\n"
        "r9,no,2026-11-20\n"
        "r2,no,\n"
        "r0,no,2026-11-20\n"
        "r1,1,2026-11-20T10:00:00+02:00\n"
    )
    with pytest.raises(labels.LabelValidationError) as refused:
        import_labels(settings, path, NOW)
    assert refused.value.errors == [
        "row 1, column 'churned': 'maybe' is not yes/no, true/false or 1/0",
        "row 1, column 'observed_at': 'yesterday' is not an ISO 8601 time",
        "row 2, column 'request_id': unknown request id 'r9' (no such request logged since 2026-11-15)",
        "row 3: missing observed_at",
        "row 4, column 'request_id': duplicate request id 'r0'",
    ]
    assert stored(settings, layout.LABELS_PREFIX) == [] and stored(settings, layout.LABELLED_PREFIX) == []
    assert outcomes(settings) == {}


def test_a_request_logged_after_the_import_day_or_before_the_look_back_is_unknown(settings, tmp_path):
    log(settings, NOW - timedelta(days=6), ["old"], "old")
    with pytest.raises(labels.LabelValidationError, match="unknown request id 'r0'"):
        import_labels(settings, labels_file(tmp_path, [("r0", "yes")]), NOW - timedelta(days=1))
    with pytest.raises(labels.LabelValidationError) as refused:
        import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("old", "no")]), NOW)
    assert refused.value.errors == [
        "row 2, column 'request_id': unknown request id 'old' (no such request logged since 2026-11-15)"
    ]
    ok = CommonSettings(bucket=settings.bucket, labels_max_request_age_days=6)
    assert import_labels(ok, labels_file(tmp_path, [("r0", "yes"), ("old", "no")]), NOW).days_scanned == 7


def test_an_import_above_the_row_cap_is_refused(settings, tmp_path):
    capped = CommonSettings(bucket=settings.bucket, labels_max_rows=3)
    rows = [(f"r{i}", "yes") for i in range(4)]
    with pytest.raises(labels.LabelValidationError, match="more than 3 labels"):
        import_labels(capped, labels_file(tmp_path, rows), NOW)
    assert stored(settings, layout.LABELS_PREFIX) == [] and stored(settings, layout.LABELLED_PREFIX) == []


def test_a_labels_file_in_gcs_and_jsonl_are_imported(settings, tmp_path):
    uri = layout.gs_uri(settings.bucket, "incoming/outcomes.csv")
    gcs.write_bytes(settings.project, uri, labels_file(tmp_path, [("r2", "yes"), ("r3", "0")]).read_bytes())
    assert import_labels(settings, uri, NOW).labels == 2
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text('{"request_id": "r0", "churned": true, "observed_at": "2026-11-20T09:00:00Z"}\n')
    assert import_labels(settings, jsonl, NOW + timedelta(minutes=1)).labels == 1
    assert outcomes(settings) == {"r0": True, "r2": True, "r3": False}


def test_a_corrupt_log_object_and_line_are_skipped_and_counted(settings, tmp_path):
    cut = request_log.encode_batch([{"request_id": "r5", "ts": NOW.timestamp()}])
    gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, layout.request_log_object(NOW, "cut")), cut[:20])
    damaged = request_log.compress(b"{oops\n")
    gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, layout.request_log_object(NOW, "bad")), damaged)

    result = import_labels(settings, labels_file(tmp_path, [("r0", "yes")]), NOW)

    assert (result.labels, result.skipped_objects, result.unreadable_rows) == (1, 1, 1)
    assert outcomes(settings) == {"r0": True}


def test_an_import_that_fails_before_its_commit_marker_leaves_nothing(settings, tmp_path, monkeypatch):
    create_file = gcs.create_file

    def no_marker(project, uri, path, content_type="application/octet-stream"):
        if "/labels/" in uri:
            raise ConnectionError("GCS went away")
        create_file(project, uri, path, content_type)

    monkeypatch.setattr(label_import.gcs, "create_file", no_marker)
    with pytest.raises(ConnectionError):
        import_labels(settings, labels_file(tmp_path, [("r0", "yes")]), NOW)
    assert stored(settings, layout.LABELS_PREFIX) == [] and stored(settings, layout.LABELLED_PREFIX) == []


def test_examples_of_an_import_that_died_before_its_commit_marker_are_invisible(settings, tmp_path):
    result = import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("r1", "no")]), NOW)
    assert outcomes(settings) == {"r0": True, "r1": False}
    gcs.delete_object(settings.project, settings.bucket, layout.parse_gs_uri(result.uri)[1])  # as if never written

    assert len(stored(settings, layout.LABELLED_PREFIX)) == 1
    assert outcomes(settings) == {}


def test_the_labels_object_holds_the_valid_rows_in_file_order(settings, tmp_path):
    stored_import = import_labels(settings, labels_file(tmp_path, [("r2", "no"), ("r0", "yes")]), NOW)

    rows = [
        orjson.loads(line) for line in gzip.decompress(gcs.read_bytes(settings.project, stored_import.uri)).splitlines()
    ]
    assert [(row["request_id"], row["churned"]) for row in rows] == [("r2", False), ("r0", True)]
    assert {row["observed_at"] for row in rows} == {"2026-11-20T00:00:00.000000+00:00"}


def test_an_import_completes_within_a_small_memory_budget(settings, tmp_path):
    ids = [f"m{i:06d}" for i in range(120_000)]
    for first in range(0, len(ids), 5000):  # the service's batch size
        log(settings, NOW, ids[first : first + 5000], batch=f"many{first}")
    small = settings.model_copy(update={"duckdb_memory_limit": 256 << 20})  # 64 MiB for the import's own database

    result = import_labels(small, labels_file(tmp_path, [(i, "yes") for i in ids]), NOW)

    assert result.labels == 120_000
    frame = recent_labelled(open_engine(settings), NOW - timedelta(days=1), NOW.date(), 200_000)
    assert sorted(frame.column(schema.ID_COLUMN).to_pylist()) == ids
