"""The query engines behind one interface: DuckDB in-process (the default) and BigQuery.

`open_engine(settings)` picks one by `settings.outcomes_engine`; `run(query)` returns an Arrow table,
`batches(query)` streams it. DuckDB lists the objects of the partitions a query scans, downloads them
concurrently into a private temporary directory (at most `outcomes_local_bytes` at a time) and reads
the local files natively, typed by `tables`, within `duckdb_memory_limit` (spilling to that directory),
writing each result to a local Parquet file that Arrow then reads (so no result has to fit in memory).
A query whose result is a per-row filter of the request log (`Query.splittable`) runs part by part
when its objects exceed the byte cap; any other larger scan reads GCS through gcsfs. Labelled examples
count only once their import committed (its labels object exists). A corrupt request-log line becomes a
row of NULLs; a corrupt object fails the read, so the engine drops that object, counts it in
`skipped_objects` and runs the query again. BigQuery runs the same query against the external tables
of `settings.bigquery_dataset` (see infra/), with query parameters.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlglot
from sqlglot import exp

from churnflow.outcomes import tables
from churnflow.outcomes.queries import IMPORT_LABELS, Query, Scan
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, layout

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
BATCH_ROWS = 100_000


class Engine(Protocol):
    """Runs outcome queries; `skipped_objects` names the objects it could not read."""

    skipped_objects: list[str]
    max_labels_per_query: int | None

    def run(self, query: Query) -> pa.Table:
        """The result of `query`."""
        ...

    def batches(self, query: Query) -> Iterator[pa.RecordBatch]:
        """The result of `query`, in record batches."""
        ...


def open_engine(settings: CommonSettings) -> Engine:
    """The engine `settings.outcomes_engine` names."""
    if settings.outcomes_engine == "bigquery":
        return BigQueryEngine(settings)
    return DuckDBEngine(settings)


_LABELLED_COLUMNS = ", ".join(
    f"u.{name}" if name in ("churned", "observed_at") else f"r.{name}"
    for name in tables.LABELLED_FIELDS
    if name != tables.IMPORT_KEY
)


def _user_labelled(source: str, dialect: str) -> str:
    """The labelled relation joining the request log with a user's table or SELECT (no import order).

    DuckDB's request_log view already holds only the scanned days; BigQuery needs the partition filter.
    """
    relation = f"({source})" if " " in source.strip() else f"`{source}`" if dialect == "bigquery" else source
    where = " WHERE r.dt BETWEEN @first_day AND @last_day" if dialect == "bigquery" else ""
    return (
        f"SELECT {_LABELLED_COLUMNS}, '' AS {tables.IMPORT_KEY}, r.dt FROM request_log AS r "
        f"JOIN {relation} AS u ON r.request_id = u.request_id{where}"
    )


def memory_limit(size: int) -> str:
    """DuckDB's spelling of a memory limit of `size` bytes."""
    return f"{size >> 20}MiB"


def filesystem(settings: CommonSettings) -> Any:
    """A gcsfs filesystem: the emulator's when STORAGE_EMULATOR_HOST is set, else Application Default Credentials."""
    # gcsfs 2026.x probes each bucket's type over gRPC first, which against an emulator hangs 60 s per bucket
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import gcsfs

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return gcsfs.GCSFileSystem(project=settings.project, endpoint_url=emulator, token="anon")
    return gcsfs.GCSFileSystem(project=settings.project)


class DuckDBEngine:
    """DuckDB in this process, reading the bucket's objects of the partitions a query scans."""

    max_labels_per_query: int | None = None

    def __init__(self, settings: CommonSettings):
        import duckdb

        self.settings = settings
        self.skipped_objects: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="churnflow-duckdb-")
        spill = Path(self._tmp.name) / "spill"
        limit = memory_limit(settings.duckdb_memory_limit)
        self._con = duckdb.connect(config={"memory_limit": limit, "temp_directory": str(spill)})
        self._con.execute("SET preserve_insertion_order = false")
        self._con.execute("SET TimeZone = 'UTC'")
        self._gcsfs = False

    def objects(self, table: tables.Table, scan: Scan) -> dict[str, int]:
        """gs:// URI → size of `table`'s readable objects in the days of `scan` (committed ones, for `labelled`)."""
        after = scan.last + timedelta(days=1)  # one listing of the names from the first day to the last
        start, end = f"{table.prefix}dt={scan.first:%Y-%m-%d}/", f"{table.prefix}dt={after:%Y-%m-%d}/"
        found: dict[str, int] = {}
        for name, size in gcs.list_sizes(self.settings.project, self.settings.bucket, table.prefix, start, end).items():
            uri = layout.gs_uri(self.settings.bucket, name)
            if name.endswith(table.suffix) and uri not in self.skipped_objects:
                found[name] = size
        if table is tables.LABELLED:
            committed = self._committed(list(found))
            found = {name: size for name, size in found.items() if name in committed}
        return {layout.gs_uri(self.settings.bucket, name): size for name, size in found.items()}

    def _committed(self, names: list[str]) -> set[str]:
        """The labelled objects among `names` whose import stored its labels object (the commit marker)."""
        keys = {name: layout.labelled_import_key(name) for name in names}
        markers = {layout.labels_object_of(key) for key in keys.values() if key}
        days = {marker.rsplit("/", 1)[0] + "/" for marker in markers}
        stored = {n for day in days for n in gcs.list_names(self.settings.project, self.settings.bucket, day)}
        return {name for name, key in keys.items() if key and layout.labels_object_of(key) in stored}

    def _stage(self, uris: list[str], into: Path) -> dict[str, str]:
        """Download `uris` concurrently below `into` (keeping their partition paths): local path → URI."""
        local = {str(into / layout.parse_gs_uri(uri)[1]): uri for uri in uris}
        for path in local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(self.settings.outcomes_read_workers) as pool:
            list(pool.map(lambda item: gcs.download_file(self.settings.project, item[1], item[0]), local.items()))
        return local

    def _remote(self, uris: list[str]) -> dict[str, str]:
        """Read `uris` straight from GCS: register gcsfs once; each URI names itself."""
        if not self._gcsfs:
            self._con.register_filesystem(filesystem(self.settings))
            self._gcsfs = True
        return {uri: uri for uri in uris}

    def _view(self, table: tables.Table, files: list[str], import_labels: bool) -> str:
        columns = tables.duckdb_columns(table.name)
        if not files:
            typed = [f"CAST(NULL AS {kind}) AS {name}" for name, kind in columns.items()]
            typed += [f"CAST(NULL AS {tables.DUCKDB_TYPES[kind]}) AS {key}" for key, kind in table.partitions]
            return f"SELECT {', '.join(typed)} WHERE false"
        listed = "[" + ", ".join(_quote(f) for f in files) + "]"
        hive = "{" + ", ".join(f"{_quote(k)}: {_quote(tables.DUCKDB_TYPES[t])}" for k, t in table.partitions) + "}"
        if table.format == tables.PARQUET:
            return f"SELECT * FROM read_parquet({listed}, hive_partitioning = true, hive_types = {hive})"
        if import_labels:
            return _narrowed_log(listed, hive, columns, [key for key, _ in table.partitions])
        spec = "{" + ", ".join(f"{_quote(k)}: {_quote(v)}" for k, v in columns.items()) + "}"
        return (
            f"SELECT * FROM read_json({listed}, format = 'newline_delimited', columns = {spec}, "
            f"hive_partitioning = true, hive_types = {hive}, ignore_errors = true)"
        )

    def _sources(self, query: Query) -> dict[tables.Table, Scan]:
        """The stored tables `query` reads, and their scans (the user's labels read the request log)."""
        scans = {tables.TABLES[name]: scan for name, scan in query.scans.items()}
        if self.settings.labels_source and tables.LABELLED in scans:
            scans[tables.REQUEST_LOG] = scans.pop(tables.LABELLED)
        return scans

    def _parts(self, query: Query) -> Iterator[tuple[dict[tables.Table, list[str]], bool]]:
        """The object URIs of each table `query` reads, and whether to download them: all at once when they
        fit the byte cap, else in parts of at most the cap (splittable queries) or read remotely."""
        listed = {table: self.objects(table, scan) for table, scan in self._sources(query).items()}
        cap = self.settings.outcomes_local_bytes
        whole = {table: sorted(sizes) for table, sizes in listed.items()}
        if sum(sum(sizes.values()) for sizes in listed.values()) <= cap:
            yield whole, True
            return
        if not query.splittable:
            yield whole, False
            return
        [(table, sizes)] = listed.items()  # a splittable query reads one table
        part: list[str] = []
        used = 0
        for uri, size in sorted(sizes.items(), reverse=True):  # newest first
            if part and used + size > cap:
                yield {table: part}, True
                part, used = [], 0
            part.append(uri)
            used += size
        yield {table: part}, True

    def _result(self, query: Query, uris: dict[tables.Table, list[str]], local: bool, into: Path) -> Path:
        """Write the result of `query` over `uris` to a local Parquet file (streamed: it never has to fit in
        memory); a corrupt object is skipped and counted."""
        import duckdb

        if query.labels is not None:
            self._con.register(IMPORT_LABELS, query.labels)
        every = sorted({uri for files in uris.values() for uri in files})
        result = into / "result.parquet"
        paths = self._stage(every, into) if local else self._remote(every)
        sql = query.to("duckdb")
        while True:
            for table, files in uris.items():
                readable = [p for p, uri in paths.items() if uri in files and uri not in self.skipped_objects]
                view = self._view(table, readable, query.labels is not None)
                self._con.execute(f"CREATE OR REPLACE TEMP VIEW {table.name} AS {view}")
            if self.settings.labels_source and tables.LABELLED.name in query.scans:
                labelled = _user_labelled(self.settings.labels_source, "duckdb")
                self._con.execute(f"CREATE OR REPLACE TEMP VIEW {tables.LABELLED.name} AS {labelled}")
            try:
                self._con.execute(
                    f"COPY ({sql}) TO {_quote(str(result))} (FORMAT parquet, ROW_GROUP_SIZE 20000)", query.params
                )
                return result
            except duckdb.Error as error:  # a truncated object raises IOException, a non-gzip one may not
                corrupt = _named_object(str(error), paths)
                if corrupt is None or corrupt in self.skipped_objects:
                    raise
                log.warning("skipped an unreadable object", extra={"object": corrupt, "error": str(error)})
                self.skipped_objects.append(corrupt)

    def _results(self, query: Query) -> Iterator[Path]:
        """For each part of `query`: the Parquet file of its result (deleted at the next part)."""
        for uris, local in self._parts(query):
            into = Path(tempfile.mkdtemp(dir=self._tmp.name, prefix="stage-"))
            try:
                yield self._result(query, uris, local, into)
            finally:
                shutil.rmtree(into, ignore_errors=True)

    def batches(self, query: Query) -> Iterator[pa.RecordBatch]:
        """Stream `query`'s result; a splittable query over more than the byte cap runs part by part."""
        import pyarrow.parquet as pq

        for result in self._results(query):
            yield from pq.ParquetFile(result).iter_batches(BATCH_ROWS)

    def run(self, query: Query) -> pa.Table:
        """The result of `query`, whole."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pa.concat_tables([pq.read_table(result) for result in self._results(query)])


def _narrowed_log(files: str, hive: str, columns: dict[str, str], keys: list[str]) -> str:
    """The request log narrowed to the lines of the import's requests (and the unreadable ones), decoded.

    A query over `import_labels` keeps only those request-log rows, so the engine decodes no other line:
    each line is read as text, its `request_id` extracted, and only the lines whose id is imported (or
    that are not JSON: one all-NULL row each, to be counted) are decoded into typed columns. Three
    times faster than decoding every record (measured on 100k rows).
    """
    shape = _quote(json.dumps(columns))
    lines = (
        f"read_csv({files}, columns = {{'line': 'VARCHAR'}}, delim = '\x01', quote = '', escape = '', "
        f"header = false, auto_detect = false, hive_partitioning = true, hive_types = {hive})"
    )
    return (
        f"SELECT UNNEST(TRY(json_transform(line, {shape}))), {', '.join(keys)} FROM ("
        f"SELECT *, TRY(json_extract_string(line, '$.request_id')) AS id FROM {lines}) AS l "
        f"WHERE id IS NULL OR EXISTS (SELECT 1 FROM {IMPORT_LABELS} AS i WHERE i.request_id = l.id)"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _named_object(message: str, paths: dict[str, str]) -> str | None:
    """The gs:// URI of the object a DuckDB error names (by its local path or its URI), if any."""
    for path, uri in paths.items():
        if path in message or uri in message or uri.replace("gs://", "gcs://") in message:
            return uri
    return None


class BigQueryEngine:
    """BigQuery, over the external tables `request_log`, `labels` and `labelled` of `settings.bigquery_dataset`."""

    max_labels_per_query: int | None = 10_000
    """An import's labels travel as an ARRAY<STRUCT> query parameter, so a large import takes several queries."""

    def __init__(self, settings: CommonSettings):
        self.settings = settings
        self.skipped_objects: list[str] = []
        self._client: Any = None

    def compile(self, query: Query) -> str:
        """The BigQuery SQL of `query`, its tables qualified with the project and dataset."""
        tree = query.tree().copy()
        if self.settings.labels_source:
            labelled = _user_labelled(self.settings.labels_source, "bigquery")
        else:  # only committed imports: those whose labels object exists
            labelled = (
                f"SELECT * FROM {tables.LABELLED.name} WHERE dt BETWEEN @first_day AND @last_day "
                f"AND {tables.IMPORT_KEY} IN (SELECT REGEXP_EXTRACT(_FILE_NAME, r'([^/]+)[.]jsonl[.]gz$') "
                f"FROM {tables.LABELS.name} WHERE dt >= @first_day)"
            )
        replacements = {
            tables.LABELLED.name: labelled,
            IMPORT_LABELS: f"SELECT * FROM UNNEST(@{IMPORT_LABELS})",
        }
        for table in list(tree.find_all(exp.Table)):
            if table.name in replacements and not table.db:
                table.replace(_subquery(replacements[table.name], table.alias or table.name))
        for table in tree.find_all(exp.Table):
            if table.name in tables.TABLES and not table.db:
                table.set("db", exp.to_identifier(self.settings.bigquery_dataset))
                table.set("catalog", exp.to_identifier(self.settings.project))
        return tree.sql("bigquery")

    def _job(self, query: Query) -> Any:
        bigquery = importlib.import_module("google.cloud.bigquery")  # only the BigQuery engine needs it
        if self._client is None:
            self._client = bigquery.Client(project=self.settings.project, location=self.settings.bigquery_location)
        params: list[Any] = [_parameter(bigquery, name, value) for name, value in query.params.items()]
        if query.labels is not None:
            params.append(_labels_parameter(bigquery, query.labels))
        config = bigquery.QueryJobConfig(query_parameters=params)
        return self._client.query(self.compile(query), job_config=config, location=self.settings.bigquery_location)

    def run(self, query: Query) -> pa.Table:
        """Run `query` as a BigQuery job and fetch its result."""
        return self._job(query).result().to_arrow()

    def batches(self, query: Query) -> Iterator[pa.RecordBatch]:
        """Run `query` as a BigQuery job and stream its result."""
        for table in self._job(query).result().to_arrow_iterable():
            yield from table.to_batches() if hasattr(table, "to_batches") else [table]


def _subquery(select: str, alias: str) -> exp.Expression:
    parsed = sqlglot.parse_one(select, read="bigquery")
    assert isinstance(parsed, exp.Select)
    return parsed.subquery(alias)


def _parameter(bigquery: Any, name: str, value: Any) -> Any:
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", date: "DATE"}
    return bigquery.ScalarQueryParameter(name, kinds[type(value)], value)


def _labels_parameter(bigquery: Any, labels: pa.Table) -> Any:
    rows = [
        bigquery.StructQueryParameter(
            None,
            bigquery.ScalarQueryParameter("request_id", "STRING", row["request_id"]),
            bigquery.ScalarQueryParameter("churned", "BOOL", row["churned"]),
            bigquery.ScalarQueryParameter("observed_at", "TIMESTAMP", row["observed_at"]),
        )
        for row in labels.to_pylist()
    ]
    return bigquery.ArrayQueryParameter(IMPORT_LABELS, "STRUCT", rows)
