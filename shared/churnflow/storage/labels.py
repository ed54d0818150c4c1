"""Ground-truth labels in GCS: churn outcomes that arrive after the predictions they judge.

A label names the request it belongs to (`request_id`, as returned by `/predict` and logged), whether
that customer churned, and when that was observed. A batch is validated whole against the logged
requests; a valid batch is stored as one gzip JSON-lines object under the labels prefix, created with
a generation precondition so an import is written once or not at all.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from churnflow.settings import CommonSettings
from churnflow.storage import gcs, layout, request_log
from churnflow.storage.request_log_reader import RequestLogReader

FIELDS = ("request_id", "churned", "observed_at")
_TRUE = {"yes", "true", "1"}
_FALSE = {"no", "false", "0"}


class LabelValidationError(ValueError):
    """A labels batch with problems; `errors` names each bad row. Nothing was stored."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} label error(s):\n  {shown}{more}")


@dataclass(frozen=True)
class Label:
    """One observed churn outcome for a logged request."""

    request_id: str
    churned: bool
    observed_at: datetime

    def to_record(self) -> dict[str, Any]:
        """The stored JSON form."""
        return {"request_id": self.request_id, "churned": self.churned, "observed_at": self.observed_at.isoformat()}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a labels file: CSV with a header, or JSON lines (by extension .jsonl/.json)."""
    text = path.read_text()
    if path.suffix in (".jsonl", ".json"):
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(io.StringIO(text)))


def _churned(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _observed_at(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def validate(rows: Iterable[Mapping[str, Any]], known_request_ids: set[str]) -> list[Label]:
    """Labels from raw rows; raises LabelValidationError naming every bad row (rows count from 1)."""
    labels: list[Label] = []
    errors: list[str] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        missing = [f for f in FIELDS if row.get(f) in (None, "")]
        if missing:
            errors.append(f"row {number}: missing {', '.join(missing)}")
            continue
        request_id = str(row["request_id"]).strip()
        churned, observed_at = _churned(row["churned"]), _observed_at(row["observed_at"])
        if churned is None:
            errors.append(f"row {number}, column 'churned': {row['churned']!r} is not yes/no, true/false or 1/0")
        if observed_at is None:
            errors.append(f"row {number}, column 'observed_at': {row['observed_at']!r} is not an ISO 8601 time")
        if request_id not in known_request_ids:
            errors.append(f"row {number}, column 'request_id': unknown request id {request_id!r}")
        if request_id in seen:
            errors.append(f"row {number}, column 'request_id': duplicate request id {request_id!r}")
        seen.add(request_id)
        if churned is not None and observed_at is not None:
            labels.append(Label(request_id, churned, observed_at))
    if errors:
        raise LabelValidationError(errors)
    if not labels:
        raise LabelValidationError(["the file holds no labels"])
    return labels


def import_labels(settings: CommonSettings, path: Path, now: datetime | None = None) -> tuple[str, int]:
    """Validate a labels file against the logged requests and store it as one new object.

    Raises LabelValidationError (unknown ids, bad values, duplicates) before anything is written.
    """
    logged = RequestLogReader(settings.project, settings.bucket).read_all(layout.REQUEST_LOG_PREFIX)
    known = {str(r.get(request_log.REQUEST_ID)) for r in logged.records}
    parsed = validate(read_rows(path), known)
    name = layout.labels_object(now or datetime.now(UTC), uuid.uuid4().hex[:12])
    uri = layout.gs_uri(settings.bucket, name)
    gcs.create_bytes(
        settings.project, uri, request_log.encode_batch(x.to_record() for x in parsed), "application/x-ndjson"
    )
    return uri, len(parsed)


def read_outcomes(settings: CommonSettings) -> dict[str, bool]:
    """Every stored label, request id → churned (a later import overrides an earlier one)."""
    outcome: dict[str, bool] = {}
    for name in gcs.list_names(settings.project, settings.bucket, layout.LABELS_PREFIX):
        raw = gcs.read_bytes(settings.project, layout.gs_uri(settings.bucket, name))
        for record in request_log.decode_batch(raw).records:
            outcome[str(record["request_id"])] = bool(record["churned"])
    return outcome
