"""`churnflow labels import`: validate a labels file, join it once with the requests it names, store both.

Bounded by the import, not by history:
- the file (a local path or gs:// URI) is read as a stream of Arrow batches into a local DuckDB, at most
  `labels_max_rows` rows, and validated there in SQL (every bad row named, by its row number);
- the requests are found by scanning the request log newest day first, in spans of 1, 2, 4, ... days,
  back at most `labels_max_request_age_days`, and stopping as soon as every id is found: labels usually
  name recent requests, so an import reads the days it needs, and only a refused import (an id logged
  too long ago, or never) reads the whole look-back. Each span is one `matched_requests` query of the
  engine, streamed into Parquet files, one per request day, in a private temporary directory;
- nothing is stored unless the whole file is valid. Then the Parquet objects go under `labelled/`
  (partitioned by the request's day) and the labels object under `labels/` last: it is the commit marker
  without which readers ignore an import's examples, so an import that dies half way is never half
  visible (and its orphan Parquet objects are removed when the failure is an exception).
"""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnflow.outcomes import queries, tables
from churnflow.outcomes.engine import Engine, filesystem, memory_limit, open_engine
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, labels, layout

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

log = logging.getLogger(__name__)
MAX_ERRORS = 1000
"""Most error lines an import reports (with the total count)."""


@dataclass(frozen=True)
class LabelImport:
    """What an import stored, and what it read to validate it."""

    uri: str
    """The labels object (the system of record of the import, and its commit marker)."""
    labels: int
    examples: list[str]
    """The Parquet objects of its labelled examples, one per request day."""
    days_scanned: int
    """Days of the request log read to find the requests the labels name."""
    skipped_objects: int
    """Request-log objects of those days that could not be read (skipped)."""
    unreadable_rows: int
    """Request-log lines of those days that were not JSON records (skipped)."""


def import_labels(settings: CommonSettings, source: str | Path, now: datetime | None = None) -> LabelImport:
    """Validate a labels file (a local path or gs:// URI), then store its labels and labelled examples.

    Raises LabelValidationError, naming the bad rows, before anything is written.
    """
    import duckdb

    now = now or datetime.now(UTC)
    key = layout.import_key(now, uuid.uuid4().hex[:12])
    with tempfile.TemporaryDirectory(prefix="churnflow-import-") as tmp, duckdb.connect(f"{tmp}/import.duckdb") as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")  # every read of the file's rows orders by row
        budget = settings.duckdb_memory_limit  # a quarter for the labels file, five eighths for the engine's scan,
        own, scan = budget // 4, budget * 5 // 8  # the last eighth for the labels handed to it (Arrow)
        con.execute(f"SET memory_limit = '{memory_limit(own)}'")
        con.execute(f"SET temp_directory = '{Path(tmp) / 'spill'}'")
        _load(con, settings, str(source))
        engine = open_engine(settings.model_copy(update={"duckdb_memory_limit": scan}))
        examples = _Examples(Path(tmp) / "labelled", key)
        first_day = (now - timedelta(days=settings.labels_max_request_age_days)).date()
        try:
            days_scanned = _match(con, engine, examples, key, first_day, now.date())
        finally:
            examples.close()
        _raise_errors(con, first_day)
        stored = _commit(settings, con, examples, key, Path(tmp))
        count = con.sql("SELECT count(*) FROM checked").fetchall()[0][0]
    result = LabelImport(
        stored,
        int(count),
        [layout.gs_uri(settings.bucket, name) for name in examples.names()],
        days_scanned,
        len(engine.skipped_objects),
        examples.unreadable_rows,
    )
    log.info("imported labels", extra={"labels_uri": stored, "labels": result.labels, "days": days_scanned})
    return result


def _load(con: duckdb.DuckDBPyConnection, settings: CommonSettings, source: str) -> None:
    """The file's rows into table `file`, then each row parsed into table `checked`."""
    con.execute(f"CREATE TABLE file ({labels.ROW} BIGINT, {', '.join(f'{f} VARCHAR' for f in labels.FIELDS)})")
    for batch in labels.read_batches(lambda: _open(settings, source), source, settings.labels_max_rows):
        con.register("batch", batch)
        con.execute("INSERT INTO file SELECT * FROM batch")
        con.unregister("batch")
    truthy, falsy = (", ".join(f"'{v}'" for v in values) for values in (labels.TRUE, labels.FALSE))
    con.execute(f"""
        CREATE TABLE checked AS
        SELECT row, request_id, churned, observed_at,
          trim(request_id) AS id,
          CASE WHEN lower(trim(churned)) IN ({truthy}) THEN true
               WHEN lower(trim(churned)) IN ({falsy}) THEN false END AS churned_value,
          TRY_CAST(trim(observed_at) AS TIMESTAMPTZ) AS observed_value,
          request_id IS NULL OR churned IS NULL OR observed_at IS NULL AS incomplete
        FROM file
    """)
    con.execute("DROP TABLE file")
    con.execute("""
        CREATE TABLE pending AS
        SELECT id AS request_id, churned_value AS churned, observed_value AS observed_at, row FROM checked
        WHERE NOT incomplete
        QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY row) = 1
    """)
    con.execute("CREATE TABLE found (request_id VARCHAR)")


def _open(settings: CommonSettings, source: str) -> Any:
    if source.startswith("gs://"):
        return filesystem(settings).open(source, "rb")
    return open(source, "rb")  # noqa: SIM115 - the caller closes it


def _spans(first: date, last: date) -> list[tuple[date, date]]:
    """Day ranges from `last` back to `first`, newest first, each twice as long as the one before."""
    spans, end, length = [], last, 1
    while end >= first:
        start = max(first, end - timedelta(days=length - 1))
        spans.append((start, end))
        end, length = start - timedelta(days=1), length * 2
    return spans


def _match(
    con: duckdb.DuckDBPyConnection, engine: Engine, examples: _Examples, key: str, first: date, last: date
) -> int:
    """Find the pending labels' requests, newest days first, writing their examples; the days scanned."""
    scanned = 0
    for start, end in _spans(first, last):
        remaining = con.sql("SELECT request_id, churned, observed_at FROM pending").to_arrow_table()
        if not remaining.num_rows:
            break
        scanned += (end - start).days + 1
        step = engine.max_labels_per_query or remaining.num_rows
        for offset in range(0, remaining.num_rows, step):
            query = queries.matched_requests(start, end, key, remaining.slice(offset, step))
            for batch in engine.batches(query):
                con.register("matched", examples.write(batch))
                con.execute("INSERT INTO found SELECT request_id FROM matched")
                con.unregister("matched")
        con.execute("DELETE FROM pending WHERE request_id IN (SELECT request_id FROM found)")
    return scanned


def _raise_errors(con: duckdb.DuckDBPyConnection, first_day: date) -> None:
    """Raise LabelValidationError naming the file's bad rows (the first MAX_ERRORS of them, in file order)."""
    con.execute("""
        CREATE TEMP VIEW errors AS
        SELECT row, 0 AS kind, request_id, churned, observed_at FROM checked WHERE incomplete
        UNION ALL SELECT row, 1, NULL, churned, NULL FROM checked WHERE NOT incomplete AND churned_value IS NULL
        UNION ALL SELECT row, 2, NULL, NULL, observed_at FROM checked
          WHERE NOT incomplete AND (observed_value IS NULL OR NOT isfinite(observed_value))
        UNION ALL SELECT row, 3, request_id, NULL, NULL FROM pending
        UNION ALL SELECT row, 4, id, NULL, NULL FROM checked WHERE NOT incomplete
          QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY row) > 1
    """)
    found = con.sql(f"SELECT * FROM errors ORDER BY row, kind LIMIT {MAX_ERRORS}").fetchall()
    if found:
        total = con.sql("SELECT count(*) FROM errors").fetchall()[0][0]
        messages = [
            _message(row, kind, request_id, churned, observed, first_day)
            for row, kind, request_id, churned, observed in found
        ]
        raise labels.LabelValidationError(messages, total)
    if not con.sql("SELECT count(*) FROM checked").fetchall()[0][0]:
        raise labels.LabelValidationError(["the file holds no labels"])


def _message(
    row: int, kind: int, request_id: str | None, churned: str | None, observed: str | None, first_day: date
) -> str:
    if kind == 0:
        values = (request_id, churned, observed)
        missing = [name for name, value in zip(labels.FIELDS, values, strict=True) if value is None]
        return f"row {row}: missing {', '.join(missing)}"
    if kind == 1:
        return f"row {row}, column 'churned': {churned!r} is not yes/no, true/false or 1/0"
    if kind == 2:
        return f"row {row}, column 'observed_at': {observed!r} is not an ISO 8601 time"
    if kind == 3:
        since = f"no such request logged since {first_day}"
        return f"row {row}, column 'request_id': unknown request id {request_id!r} ({since})"
    return f"row {row}, column 'request_id': duplicate request id {request_id!r}"


class _Examples:
    """The labelled examples of one import, written as one local Parquet file per request day."""

    def __init__(self, root: Path, key: str):
        self.root, self.key = root, key
        self.unreadable_rows = 0
        self._writers: dict[date, Any] = {}

    def write(self, batch: pa.RecordBatch) -> pa.Table:
        """Append a `matched_requests` batch (its unreadable-line rows counted, not kept); the rows kept."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pa.Table.from_batches([batch])
        readable = table.filter(pc.is_valid(table.column("request_id")))
        self.unreadable_rows += table.num_rows - readable.num_rows
        schema = tables.arrow_schema(tables.LABELLED.name)
        for day in pc.unique(readable.column("dt")).to_pylist():
            rows = readable.filter(pc.equal(readable.column("dt"), day)).select(schema.names).cast(schema)
            if day not in self._writers:
                path = self.root / layout.labelled_object(day, self.key)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._writers[day] = pq.ParquetWriter(path, schema, compression="zstd")
            self._writers[day].write_table(rows)
        return readable

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()

    def names(self) -> list[str]:
        """The object names of the days written."""
        return [layout.labelled_object(day, self.key) for day in sorted(self._writers)]


def _commit(settings: CommonSettings, con: duckdb.DuckDBPyConnection, examples: _Examples, key: str, tmp: Path) -> str:
    """Upload the examples, then the labels object (the commit marker); remove the examples on failure.

    The labels object is written while the examples upload: DuckDB writes the JSON lines, zlib compresses
    them at level 1 (DuckDB's own gzip writer took 6.5 s for 2M labels, this 2.6 s).
    """
    uris = [layout.gs_uri(settings.bucket, name) for name in examples.names()]
    marker = layout.labels_object_of(key)
    records = tmp / "labels.jsonl.gz"

    def write_records() -> None:
        lines = tmp / "labels.jsonl"
        con.execute(f"""
            COPY (
              SELECT id AS request_id, churned_value AS churned,
                strftime(observed_value, '%Y-%m-%dT%H:%M:%S.%f') || '+00:00' AS observed_at
              FROM checked ORDER BY row
            ) TO '{lines}' (FORMAT json)
        """)
        with lines.open("rb") as source, gzip.open(records, "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target, 1 << 20)
        lines.unlink()

    uploaded: list[str] = []

    def upload(name: str) -> None:
        gcs.create_file(settings.project, layout.gs_uri(settings.bucket, name), str(examples.root / name))
        uploaded.append(name)

    try:
        with ThreadPoolExecutor(8) as pool:
            written = pool.submit(write_records)
            list(pool.map(upload, examples.names()))
            written.result()
        stored = layout.gs_uri(settings.bucket, marker)
        gcs.create_file(settings.project, stored, str(records), labels.CONTENT_TYPE)
    except Exception:
        for name in uploaded:
            gcs.delete_object(settings.project, settings.bucket, name)
        raise
    log.debug("stored labelled examples", extra={"objects": uris})
    return stored
