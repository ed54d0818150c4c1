"""Ground-truth labels files: churn outcomes that arrive after the predictions they judge.

A label names the request it belongs to (`request_id`, as returned by `/predict` and logged), whether
that customer churned, and when that was observed. A labels file (CSV with a header, or JSON lines) is
read here as a stream of Arrow batches of raw text with their row numbers, at most `max_rows` rows;
outcomes.label_import validates them and stores a valid import as one gzip JSON-lines object under
the labels prefix (the system of record) plus its labelled examples.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv

FIELDS = ("request_id", "churned", "observed_at")
ROW = "row"
TRUE = ("yes", "true", "1")
FALSE = ("no", "false", "0")
CONTENT_TYPE = "application/x-ndjson"
_CHUNK_ROWS = 100_000
SHOWN_ERRORS = 20


class LabelValidationError(ValueError):
    """A labels batch with problems; `errors` names bad rows (the first ones, of `total`). Nothing was stored."""

    def __init__(self, errors: list[str], total: int | None = None):
        self.errors = errors
        self.total = len(errors) if total is None else total
        shown = "\n  ".join(errors[:SHOWN_ERRORS])
        more = f"\n  ... and {self.total - SHOWN_ERRORS} more" if self.total > SHOWN_ERRORS else ""
        super().__init__(f"{self.total} label error(s):\n  {shown}{more}")


BATCH_SCHEMA = pa.schema([(ROW, pa.int64()), *((name, pa.string()) for name in FIELDS)])
"""Raw label rows: their number in the file (from 1, after a CSV header) and each field as text (null: absent)."""


Opener = Callable[[], IO[bytes]]


def read_batches(open_file: Opener, name: str, max_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of a labels file as BATCH_SCHEMA batches, streamed: CSV with a header, or JSON lines (by
    extension .jsonl/.json). Raises LabelValidationError on rows that are not records, or past `max_rows`."""
    count = 0
    try:
        with open_file() as stream:
            for batch in _jsonl_batches(stream) if name.endswith((".jsonl", ".json")) else _csv_batches(stream):
                count += batch.num_rows
                if count > max_rows:
                    too_many = f"the file holds more than {max_rows:,} labels (labels_max_rows)"
                    raise LabelValidationError([f"{too_many}: split it into several imports"])
                yield batch
    except pa.ArrowInvalid as error:  # Arrow names no row number: find the malformed rows again
        with open_file() as stream:
            errors, total = _malformed_rows(stream)
        raise LabelValidationError(errors or [f"not a readable CSV file: {error}"], total or 1) from None


def _batch(first: int, columns: list[Any]) -> pa.RecordBatch:
    numbers = pa.array(range(first, first + len(columns[0])), pa.int64())
    return pa.record_batch([numbers, *columns], schema=BATCH_SCHEMA)


def _csv_batches(stream: IO[bytes]) -> Iterator[pa.RecordBatch]:
    import pyarrow.compute as pc

    reader = pa_csv.open_csv(
        stream,
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(FIELDS, pa.string()),
            include_columns=list(FIELDS),
            include_missing_columns=True,
            strings_can_be_null=False,
        ),
    )
    first = 1
    for batch in reader:
        blank = pa.scalar(None, pa.string())
        columns = [pc.if_else(pc.equal(batch.column(name), ""), blank, batch.column(name)) for name in FIELDS]
        yield _batch(first, columns)
        first += batch.num_rows


def _malformed_rows(stream: IO[bytes]) -> tuple[list[str], int]:
    """The CSV rows whose field count differs from the header's, and how many there are."""
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    width = len(next(reader, []))
    errors = [
        f"row {number}: {len(row)} fields, the header has {width}"
        for number, row in enumerate((row for row in reader if row), start=1)
        if len(row) != width
    ]
    return errors[:1000], len(errors)


def _jsonl_batches(stream: IO[bytes]) -> Iterator[pa.RecordBatch]:
    chunk: list[list[str | None]] = [[] for _ in FIELDS]
    first = number = 1
    for number, line in enumerate((line for line in stream if line.strip()), start=1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise LabelValidationError([f"row {number}: not a JSON object"])
        for column, name in zip(chunk, FIELDS, strict=True):
            value = record.get(name)
            column.append(None if value is None or value == "" else str(value))
        if number - first + 1 == _CHUNK_ROWS:
            yield _batch(first, [pa.array(c, pa.string()) for c in chunk])
            chunk, first = [[] for _ in FIELDS], number + 1
    if chunk[0]:
        yield _batch(first, [pa.array(c, pa.string()) for c in chunk])
