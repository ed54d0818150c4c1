"""Ground-truth labels in GCS: churn outcomes that arrive after the predictions they judge.

A label names the request it belongs to (`request_id`, as returned by `/predict` and logged), whether
that customer churned, and when that was observed. A batch is validated whole against the logged
requests (outcomes.label_import asks the query engine which ids are unknown); a valid batch is stored
as one gzip JSON-lines object under the labels prefix, created with a generation precondition so an
import is written once or not at all.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from churnflow.settings import CommonSettings
from churnflow.storage import gcs, layout, request_log

FIELDS = ("request_id", "churned", "observed_at")
_TRUE = {"yes", "true", "1"}
_FALSE = {"no", "false", "0"}
CONTENT_TYPE = "application/x-ndjson"


class LabelValidationError(ValueError):
    """A labels batch with problems; `errors` names each bad row. Nothing was stored."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} label error(s):\n  {shown}{more}")


@dataclass(frozen=True, slots=True)
class Label:
    """One observed churn outcome for a logged request."""

    request_id: str
    churned: bool
    observed_at: datetime

    def to_record(self) -> dict[str, Any]:
        """The stored JSON form."""
        return {"request_id": self.request_id, "churned": self.churned, "observed_at": self.observed_at.isoformat()}


def read_rows(stream: IO[bytes], name: str) -> Iterator[dict[str, Any]]:
    """Rows of a labels file, one at a time: CSV with a header, or JSON lines (by extension .jsonl/.json)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    if name.endswith((".jsonl", ".json")):
        yield from (orjson.loads(line) for line in text if line.strip())
    else:
        yield from csv.DictReader(text)


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


def validate(rows: Iterable[Mapping[str, Any]], unknown: Callable[[list[str]], set[str]]) -> list[Label]:
    """Labels from raw rows; raises LabelValidationError naming every bad row (rows count from 1).

    Rows are checked as they stream in; `unknown` then gets every request id at once and returns those
    no logged request carries (one anti-join in the query engine).
    """
    labels: list[Label] = []
    errors: list[tuple[int, int, str]] = []  # (row, order within the row, message)
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        missing = [f for f in FIELDS if row.get(f) in (None, "")]
        if missing:
            errors.append((number, 0, f"row {number}: missing {', '.join(missing)}"))
            continue
        request_id = str(row["request_id"]).strip()
        churned, observed_at = _churned(row["churned"]), _observed_at(row["observed_at"])
        if churned is None:
            text = f"row {number}, column 'churned': {row['churned']!r} is not yes/no, true/false or 1/0"
            errors.append((number, 1, text))
        if observed_at is None:
            text = f"row {number}, column 'observed_at': {row['observed_at']!r} is not an ISO 8601 time"
            errors.append((number, 2, text))
        if request_id in first_row:
            errors.append((number, 4, f"row {number}, column 'request_id': duplicate request id {request_id!r}"))
        else:
            first_row[request_id] = number
        if churned is not None and observed_at is not None:
            labels.append(Label(request_id, churned, observed_at))
    for request_id in unknown(list(first_row)) if first_row else ():
        number = first_row[request_id]
        errors.append((number, 3, f"row {number}, column 'request_id': unknown request id {request_id!r}"))
    if errors:
        raise LabelValidationError([text for _, _, text in sorted(errors)])
    if not labels:
        raise LabelValidationError(["the file holds no labels"])
    return labels


def store(settings: CommonSettings, labels: Iterable[Label], now: datetime) -> str:
    """Write validated labels as one new object under the labels prefix (never over another); its URI."""
    name = layout.labels_object(now, uuid.uuid4().hex[:12])
    uri = layout.gs_uri(settings.bucket, name)
    gcs.create_bytes(settings.project, uri, request_log.encode_batch(x.to_record() for x in labels), CONTENT_TYPE)
    return uri
