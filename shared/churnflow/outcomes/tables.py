"""The three tables the outcome queries read, defined once for every engine and for infra/.

`request_log` holds the records of storage/request_log.py under `requests/`, hive partitioned by `dt`
(DATE) and `hour` (INTEGER); `labels` holds the records of storage/labels.py under `labels/`,
partitioned by `dt` (the import day); `labelled` holds the labelled examples each label import
materialises (outcomes/label_import.py) as Parquet under `labelled/`, partitioned by `dt`, the day the
request was logged: the logged request, its outcome and the import it came from (`import_key`, which
sorts by import time). Column names are the record field names; types come from core/schema.py.
`python -m churnflow.outcomes.tables schema TABLE` prints the BigQuery JSON schema (without the
partition columns, which BigQuery takes from the paths), `... partitions TABLE` the hive partition
spec of the source URI prefix (e.g. `{dt:DATE}/{hour:INTEGER}`), `... format TABLE` its source format.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from churnflow.core import schema
from churnflow.storage import labels, layout, request_log

STRING, INTEGER, FLOAT, BOOLEAN, TIMESTAMP, DATE = "STRING", "INTEGER", "FLOAT", "BOOLEAN", "TIMESTAMP", "DATE"
DUCKDB_TYPES = {
    STRING: "VARCHAR",
    INTEGER: "BIGINT",
    FLOAT: "DOUBLE",
    BOOLEAN: "BOOLEAN",
    TIMESTAMP: "TIMESTAMPTZ",
    DATE: "DATE",
}
"""BigQuery (legacy schema) type → DuckDB type."""
JSON_LINES, PARQUET = "NEWLINE_DELIMITED_JSON", "PARQUET"

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Table:
    """A hive-partitioned table of objects under `prefix` of the bucket: gzip JSON lines or Parquet."""

    name: str
    prefix: str
    columns: tuple[tuple[str, str], ...]
    partitions: tuple[tuple[str, str], ...]
    format: str = JSON_LINES

    @property
    def suffix(self) -> str:
        """How the names of the table's objects end."""
        return ".parquet" if self.format == PARQUET else ".jsonl.gz"


def _feature_type(feature: schema.Feature) -> str:
    if isinstance(feature, schema.NumericFeature):
        return INTEGER if feature.dtype is int else FLOAT
    return INTEGER if all(isinstance(c, int) for c in feature.categories) else STRING


_FEATURES = tuple((f.name, _feature_type(f)) for f in schema.FEATURES)
_REQUEST_TYPES = {
    request_log.REQUEST_ID: STRING,
    request_log.TIMESTAMP: FLOAT,
    request_log.MODEL_VERSION: INTEGER,
    **dict(_FEATURES),
    request_log.PROBABILITY: FLOAT,
    request_log.PREDICTION: INTEGER,
    request_log.LATENCY_MS: FLOAT,
    request_log.INSTANCE: STRING,
    request_log.SEQUENCE: INTEGER,
}
_LABEL_TYPES = {"request_id": STRING, "churned": BOOLEAN, "observed_at": TIMESTAMP}
IMPORT_KEY = "import_key"
LABELLED_FIELDS = (
    request_log.REQUEST_ID,
    request_log.TIMESTAMP,
    request_log.MODEL_VERSION,
    *schema.FEATURE_NAMES,
    request_log.PROBABILITY,
    request_log.PREDICTION,
    *labels.FIELDS[1:],
    IMPORT_KEY,
)

REQUEST_LOG = Table(
    "request_log",
    layout.REQUEST_LOG_PREFIX,
    tuple((name, _REQUEST_TYPES[name]) for name in request_log.RECORD_FIELDS),
    (("dt", DATE), ("hour", INTEGER)),
)
LABELS = Table(
    "labels",
    layout.LABELS_PREFIX,
    tuple((name, _LABEL_TYPES[name]) for name in labels.FIELDS),
    (("dt", DATE),),
)
LABELLED = Table(
    "labelled",
    layout.LABELLED_PREFIX,
    tuple((name, {**_REQUEST_TYPES, **_LABEL_TYPES, IMPORT_KEY: STRING}[name]) for name in LABELLED_FIELDS),
    (("dt", DATE),),
    PARQUET,
)
TABLES = {t.name: t for t in (REQUEST_LOG, LABELS, LABELLED)}


def bigquery_schema(table: str) -> list[dict[str, str]]:
    """The BigQuery JSON schema of `table` (its stored columns; the partition columns come from the paths)."""
    return [{"name": name, "type": kind, "mode": "NULLABLE"} for name, kind in TABLES[table].columns]


def hive_partition_spec(table: str) -> str:
    """The custom hive partition layout of `table`, as in BigQuery's source URI prefix: `{dt:DATE}/{hour:INTEGER}`."""
    return "/".join(f"{{{key}:{kind}}}" for key, kind in TABLES[table].partitions)


def duckdb_columns(table: str) -> dict[str, str]:
    """Column name → DuckDB type of `table`'s stored columns (read_json's `columns`)."""
    return {name: DUCKDB_TYPES[kind] for name, kind in TABLES[table].columns}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of `table`'s stored columns (the Parquet objects of `labelled` are written with it)."""
    import pyarrow as pa

    types = {
        STRING: pa.string(),
        INTEGER: pa.int64(),
        FLOAT: pa.float64(),
        BOOLEAN: pa.bool_(),
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
        DATE: pa.date32(),
    }
    return pa.schema([(name, types[kind]) for name, kind in TABLES[table].columns])


def main(argv: list[str] | None = None) -> int:
    """`schema TABLE` prints the BigQuery JSON schema; `partitions TABLE` the hive partition spec; `format TABLE`
    the BigQuery source format."""
    parser = argparse.ArgumentParser(prog="python -m churnflow.outcomes.tables", description=main.__doc__)
    parser.add_argument("what", choices=("schema", "partitions", "format"))
    parser.add_argument("table", choices=sorted(TABLES))
    args = parser.parse_args(argv)
    if args.what == "schema":
        print(json.dumps(bigquery_schema(args.table), indent=2))
    elif args.what == "format":
        print(TABLES[args.table].format)
    else:
        print(hive_partition_spec(args.table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
