"""Label imports against the real GCS emulator: validated against the logged requests by the query
engine (DuckDB over gcsfs), stored whole or not at all."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from churnflow.core import schema
from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.label_import import import_labels
from churnflow.outcomes.labelled import recent_labelled
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, labels, layout, request_log

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def settings(stack_env):
    """A fresh bucket whose request log holds requests r0..r3."""
    common = CommonSettings(bucket=f"labels-{uuid.uuid4().hex[:10]}")
    gcs.ensure_bucket(common.project, common.bucket)
    records = [
        {"request_id": f"r{i}", "ts": NOW.timestamp() + i, "model_version": 1, **schema.EXAMPLE_CUSTOMER}
        for i in range(4)
    ]
    name = layout.request_log_object(NOW, "batch")
    gcs.write_bytes(common.project, layout.gs_uri(common.bucket, name), request_log.encode_batch(records))
    return common


def labels_file(tmp_path, rows):
    path = tmp_path / f"labels-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("request_id,churned,observed_at\n" + "".join(f"{r},{c},2026-11-20\n" for r, c in rows))
    return path


def outcomes(settings):
    frame = recent_labelled(open_engine(settings), NOW - timedelta(days=1), NOW.date(), 100).to_pandas()
    return dict(zip(frame[schema.ID_COLUMN], frame[schema.TARGET] == schema.TARGET_POSITIVE, strict=True))


def test_an_import_is_stored_and_a_later_one_overrides(settings, tmp_path):
    uri, count = import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("r1", "no")]), NOW)
    assert count == 2 and uri.startswith(f"gs://{settings.bucket}/labels/dt=2026-11-20/")
    import_labels(settings, labels_file(tmp_path, [("r1", "yes")]), NOW + timedelta(hours=1))
    assert outcomes(settings) == {"r0": True, "r1": True}


def test_an_unknown_request_id_is_refused_and_nothing_is_stored(settings, tmp_path):
    with pytest.raises(labels.LabelValidationError) as refused:
        import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("r9", "no"), ("r0", "no")]), NOW)
    assert refused.value.errors == [
        "row 2, column 'request_id': unknown request id 'r9'",
        "row 3, column 'request_id': duplicate request id 'r0'",
    ]
    assert gcs.list_names(settings.project, settings.bucket, layout.LABELS_PREFIX) == []
    assert outcomes(settings) == {}


def test_a_request_logged_after_the_import_day_is_unknown(settings, tmp_path):
    with pytest.raises(labels.LabelValidationError, match="unknown request id 'r0'"):
        import_labels(settings, labels_file(tmp_path, [("r0", "yes")]), NOW - timedelta(days=1))


def test_a_labels_file_in_gcs_is_imported(settings, tmp_path):
    uri = layout.gs_uri(settings.bucket, "incoming/outcomes.csv")
    gcs.write_bytes(settings.project, uri, labels_file(tmp_path, [("r2", "yes"), ("r3", "0")]).read_bytes())
    assert import_labels(settings, uri, NOW)[1] == 2
    assert outcomes(settings) == {"r2": True, "r3": False}
