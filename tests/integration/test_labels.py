"""Label imports against the real GCS emulator: validated against the logged requests, stored whole or not at all."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from churnflow.core import schema
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, labels, layout, request_log

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def settings(stack_env):
    """A fresh bucket whose request log holds requests r0..r3."""
    common = CommonSettings(bucket=f"labels-{uuid.uuid4().hex[:10]}")
    gcs.ensure_bucket(common.project, common.bucket)
    records = [{"request_id": f"r{i}", "model_version": 1, **schema.EXAMPLE_CUSTOMER} for i in range(4)]
    name = layout.request_log_object(NOW, "batch")
    gcs.write_bytes(common.project, layout.gs_uri(common.bucket, name), request_log.encode_batch(records))
    return common


def labels_file(tmp_path, rows):
    path = tmp_path / f"labels-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("request_id,churned,observed_at\n" + "".join(f"{r},{c},2026-11-20\n" for r, c in rows))
    return path


def test_an_import_is_stored_and_a_later_one_overrides(settings, tmp_path):
    uri, count = labels.import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("r1", "no")]), NOW)
    assert count == 2 and uri.startswith(f"gs://{settings.bucket}/labels/dt=2026-11-20/")
    labels.import_labels(settings, labels_file(tmp_path, [("r1", "yes")]), NOW + timedelta(hours=1))
    assert labels.read_outcomes(settings) == {"r0": True, "r1": True}


def test_an_unknown_request_id_is_refused_and_nothing_is_stored(settings, tmp_path):
    with pytest.raises(labels.LabelValidationError, match="unknown request id 'r9'"):
        labels.import_labels(settings, labels_file(tmp_path, [("r0", "yes"), ("r9", "no")]), NOW)
    assert gcs.list_names(settings.project, settings.bucket, layout.LABELS_PREFIX) == []
    assert labels.read_outcomes(settings) == {}
