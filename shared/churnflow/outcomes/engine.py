"""The query engines behind one interface: DuckDB in-process (the default) and BigQuery.

`open_engine(settings)` picks one by `settings.outcomes_engine`; `run(query)` returns an Arrow table.
DuckDB reads the gzip JSON-lines objects straight from GCS (or its emulator) through gcsfs, typed
by `tables`, within `duckdb_memory_limit`. A corrupt line becomes a row of NULLs (counted by the
queries that report `unreadable_rows`); a corrupt object fails the read, so the engine drops that
object, counts it in `skipped_objects` and runs the query again. BigQuery runs the same query against
the external tables of `settings.bigquery_dataset` (see infra/), with query parameters.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import sqlglot
from sqlglot import exp

from churnflow.outcomes import tables
from churnflow.outcomes.queries import IMPORT_IDS, Query, Scan
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, layout

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
_DAY = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


class Engine(Protocol):
    """Runs outcome queries; `skipped_objects` names the log objects it could not read."""

    skipped_objects: list[str]
    max_ids_per_query: int | None

    def run(self, query: Query) -> pa.Table:
        """The result of `query`."""
        ...


def open_engine(settings: CommonSettings) -> Engine:
    """The engine `settings.outcomes_engine` names."""
    if settings.outcomes_engine == "bigquery":
        return BigQueryEngine(settings)
    return DuckDBEngine(settings)


def _user_labels(source: str, dialect: str) -> str:
    """The labels relation over a user's table or SELECT: `dt` is the observation day, no import order."""
    query = " " in source.strip()
    relation = f"({source})" if query else f"`{source}`" if dialect == "bigquery" else source
    return (
        "SELECT request_id, churned, observed_at, CAST(observed_at AS DATE) AS dt, '' AS source "
        f"FROM {relation} AS user_labels"
    )


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
    """DuckDB in this process, reading the bucket's objects of the days a query scans."""

    max_ids_per_query: int | None = None

    def __init__(self, settings: CommonSettings):
        import duckdb

        self.settings = settings
        self.skipped_objects: list[str] = []
        self._con = duckdb.connect(config={"memory_limit": settings.duckdb_memory_limit})
        self._con.execute("SET preserve_insertion_order = false")
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.register_filesystem(filesystem(settings))

    def objects(self, table: tables.Table, scan: Scan) -> list[str]:
        """gs:// URIs of `table`'s objects in the days of `scan`, minus those skipped as corrupt."""
        if scan.first is None or table is tables.LABELS:
            prefixes = [table.prefix]
        else:
            prefixes = [f"{table.prefix}dt={date.fromordinal(d):%Y-%m-%d}/" for d in _days(scan)]
        uris = []
        for prefix in prefixes:
            for name in gcs.list_names(self.settings.project, self.settings.bucket, prefix):
                day = _DAY.search("/" + name)
                uri = layout.gs_uri(self.settings.bucket, name)
                inside = day is not None and _within(date.fromisoformat(day.group(1)), scan)
                if inside and name.endswith(".jsonl.gz") and uri not in self.skipped_objects:
                    uris.append(uri)
        return uris

    def _view(self, table: tables.Table, scan: Scan) -> str:
        columns = tables.duckdb_columns(table.name)
        uris = self.objects(table, scan)
        extra = ", filename AS source" if table is tables.LABELS else ""
        if not uris:
            typed = [f"CAST(NULL AS {kind}) AS {name}" for name, kind in columns.items()]
            typed += [f"CAST(NULL AS {tables.DUCKDB_TYPES[kind]}) AS {key}" for key, kind in table.partitions]
            typed += ["CAST(NULL AS VARCHAR) AS source"] if extra else []
            return f"SELECT {', '.join(typed)} WHERE false"
        files = "[" + ", ".join(_quote(u) for u in uris) + "]"
        spec = "{" + ", ".join(f"{_quote(k)}: {_quote(v)}" for k, v in columns.items()) + "}"
        hive = "{" + ", ".join(f"{_quote(k)}: {_quote(tables.DUCKDB_TYPES[t])}" for k, t in table.partitions) + "}"
        return (
            f"SELECT * EXCLUDE (filename){extra} FROM read_json({files}, format = 'newline_delimited', "
            f"columns = {spec}, hive_partitioning = true, hive_types = {hive}, filename = true, ignore_errors = true)"
        )

    def run(self, query: Query) -> pa.Table:
        """Run `query`; an object that fails to decompress is skipped (and counted) and the query rerun."""
        import duckdb
        import pyarrow as pa

        if query.ids or IMPORT_IDS in query.sql:
            self._con.register(IMPORT_IDS, pa.table({"request_id": pa.array(query.ids, pa.string())}))
        sql = query.to("duckdb")
        while True:
            for name, scan in query.scans.items():
                table = tables.TABLES[name]
                if name == tables.LABELS.name and self.settings.labels_source:
                    view = _user_labels(self.settings.labels_source, "duckdb")
                else:
                    view = self._view(table, scan)
                self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {view}")
            try:
                return self._con.sql(sql, params=query.params).to_arrow_table()
            except duckdb.Error as error:  # a truncated object raises IOException, a non-gzip one may not
                corrupt = _named_object(str(error), self.settings.bucket)
                if corrupt is None or corrupt in self.skipped_objects:
                    raise
                log.warning("skipped an unreadable log object", extra={"object": corrupt, "error": str(error)})
                self.skipped_objects.append(corrupt)


def _days(scan: Scan) -> range:
    assert scan.first is not None
    return range(scan.first.toordinal(), scan.last.toordinal() + 1)


def _within(day: date, scan: Scan) -> bool:
    return (scan.first is None or scan.first <= day) and day <= scan.last


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _named_object(message: str, bucket: str) -> str | None:
    """The gs:// URI of the object a DuckDB error names, if any."""
    match = re.search(rf"(?:gs|gcs)://{re.escape(bucket)}/(\S+?\.jsonl\.gz)", message)
    return layout.gs_uri(bucket, match.group(1)) if match else None


class BigQueryEngine:
    """BigQuery, over the external tables `request_log` and `labels` of `settings.bigquery_dataset`."""

    max_ids_per_query: int | None = 100_000
    """Ids of an import travel as an ARRAY<STRING> query parameter, so a large import takes several queries."""

    def __init__(self, settings: CommonSettings):
        self.settings = settings
        self.skipped_objects: list[str] = []
        self._client: Any = None

    def compile(self, query: Query) -> str:
        """The BigQuery SQL of `query`, its tables qualified with the project and dataset."""
        tree = query.tree().copy()
        labels = (
            _user_labels(self.settings.labels_source, "bigquery")
            if self.settings.labels_source
            else f"SELECT *, _FILE_NAME AS source FROM `{self._qualified(tables.LABELS.name)}`"
        )
        for table in list(tree.find_all(exp.Table)):
            if table.name == tables.REQUEST_LOG.name and not table.db:
                table.set("this", exp.to_identifier(tables.REQUEST_LOG.name))
                table.set("db", exp.to_identifier(self.settings.bigquery_dataset))
                table.set("catalog", exp.to_identifier(self.settings.project))
            elif table.name == tables.LABELS.name and not table.db:
                table.replace(_subquery(labels, table.alias or tables.LABELS.name))
            elif table.name == IMPORT_IDS:
                unnest = f"SELECT request_id FROM UNNEST(@{IMPORT_IDS}) AS request_id"
                table.replace(_subquery(unnest, table.alias or IMPORT_IDS))
        return tree.sql("bigquery")

    def _qualified(self, name: str) -> str:
        return f"{self.settings.project}.{self.settings.bigquery_dataset}.{name}"

    def run(self, query: Query) -> pa.Table:
        """Run `query` as a BigQuery job and fetch its result."""
        bigquery = importlib.import_module("google.cloud.bigquery")  # only the BigQuery engine needs it
        if self._client is None:
            self._client = bigquery.Client(project=self.settings.project, location=self.settings.bigquery_location)
        params: list[Any] = [_parameter(bigquery, name, value) for name, value in query.params.items()]
        if IMPORT_IDS in query.sql:
            params.append(bigquery.ArrayQueryParameter(IMPORT_IDS, "STRING", query.ids))
        config = bigquery.QueryJobConfig(query_parameters=params)
        job = self._client.query(self.compile(query), job_config=config, location=self.settings.bigquery_location)
        return job.result().to_arrow()


def _subquery(select: str, alias: str) -> exp.Expression:
    parsed = sqlglot.parse_one(select, read="bigquery")
    assert isinstance(parsed, exp.Select)
    return parsed.subquery(alias)


def _parameter(bigquery: Any, name: str, value: Any) -> Any:
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", date: "DATE"}
    return bigquery.ScalarQueryParameter(name, kinds[type(value)], value)
