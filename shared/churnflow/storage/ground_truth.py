"""Ground truth in GCS: importing label batches and joining them with the logged requests they judge."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from churnflow.core import schema
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, labels, layout, request_log
from churnflow.training import data

log = logging.getLogger(__name__)
READ_WORKERS = 16


@dataclass(frozen=True)
class LoggedRecords:
    """Request-log records read from GCS, with the damage skipped on the way."""

    records: list[dict]
    corrupt_objects: int
    bad_lines: int


def read_request_log(settings: CommonSettings, prefix: str = layout.REQUEST_LOG_PREFIX) -> LoggedRecords:
    """Every logged request under `prefix`; corrupt objects and lines are skipped and counted."""
    names = gcs.list_names(settings.project, settings.bucket, prefix)
    bucket = gcs.client(settings.project).bucket(settings.bucket)

    def decode(name: str) -> request_log.DecodedBatch | None:
        try:
            return request_log.decode_batch(bucket.blob(name).download_as_bytes())
        except request_log.CorruptLogObject:
            log.warning("skipping corrupt request-log object %s", name)
            return None

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        batches = list(pool.map(decode, names))
    records = [record for batch in batches if batch for record in batch.records]
    return LoggedRecords(
        records,
        corrupt_objects=sum(batch is None for batch in batches),
        bad_lines=sum(batch.bad_lines for batch in batches if batch),
    )


def import_labels(settings: CommonSettings, path: Path, now: datetime | None = None) -> tuple[str, int]:
    """Validate a labels file against the logged requests and store it as one new object.

    Raises LabelValidationError (unknown ids, bad values, duplicates) before anything is written.
    """
    known = {str(r.get(request_log.REQUEST_ID)) for r in read_request_log(settings).records}
    parsed = labels.validate(labels.read_rows(path), known)
    name = layout.labels_object(now or datetime.now(UTC), uuid.uuid4().hex[:12])
    uri = layout.gs_uri(settings.bucket, name)
    gcs.create_bytes(
        settings.project, uri, request_log.encode_batch(x.to_record() for x in parsed), "application/x-ndjson"
    )
    return uri, len(parsed)


def read_labels(settings: CommonSettings) -> dict[str, bool]:
    """Every stored label, request id → churned (a later import overrides an earlier one)."""
    outcome: dict[str, bool] = {}
    for name in gcs.list_names(settings.project, settings.bucket, layout.LABELS_PREFIX):
        raw = gcs.read_bytes(settings.project, layout.gs_uri(settings.bucket, name))
        for record in request_log.decode_batch(raw).records:
            outcome[str(record["request_id"])] = bool(record["churned"])
    return outcome


def join(records: Iterable[dict], outcomes: dict[str, bool]) -> pd.DataFrame:
    """Logged requests that have a label, as a cleaned frame of request id, the 19 features and Churn."""
    rows = [
        {
            schema.ID_COLUMN: r[request_log.REQUEST_ID],
            **{n: r[n] for n in schema.FEATURE_NAMES},
            schema.TARGET: schema.TARGET_POSITIVE if outcomes[r[request_log.REQUEST_ID]] else "No",
        }
        for r in records
        if r.get(request_log.REQUEST_ID) in outcomes
    ]
    columns = [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET]
    frame = pd.DataFrame(rows, columns=columns).drop_duplicates(schema.ID_COLUMN)
    return data.clean(frame.astype(str)) if len(frame) else frame


def labelled_traffic(settings: CommonSettings) -> pd.DataFrame:
    """The logged requests whose outcome is known, ready to train and evaluate on."""
    return join(read_request_log(settings).records, read_labels(settings))
