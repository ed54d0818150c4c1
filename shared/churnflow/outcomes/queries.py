"""The outcome queries, each written once in BigQuery's SQL and transpiled by sqlglot for DuckDB.

Every query reads the tables of `tables` through a partition filter on `dt`, so BigQuery scans only
the days it needs and DuckDB lists only those partitions (`Query.scans`). A label imported later
overrides an earlier one for the same request id (ordered by `source`, the labels object's name,
which starts with the import time); a request logged twice counts once (its first record).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

import sqlglot
from sqlglot import exp

from churnflow.core import schema
from churnflow.outcomes import tables

SOURCE_DIALECT = "bigquery"
IMPORT_IDS = "import_ids"
"""The relation of request ids being imported (one column `request_id`), supplied by the engine."""


@dataclass(frozen=True)
class Scan:
    """The `dt` partitions a query reads of one table: from `first` (None: the oldest) to `last`, inclusive."""

    first: date | None
    last: date


@dataclass(frozen=True)
class Query:
    """One query: its SQL in the source dialect, its named parameters and the partitions it scans."""

    name: str
    sql: str
    params: dict[str, Any]
    scans: dict[str, Scan]
    ids: list[str] = field(default_factory=list)
    """For UNKNOWN_IDS: the request ids of the `import_ids` relation."""

    def tree(self) -> exp.Expression:
        """The parsed source SQL."""
        return _parse(self.sql)

    def to(self, dialect: str) -> str:
        """The SQL in `dialect` (`duckdb` or `bigquery`)."""
        return self.tree().sql(dialect)


@cache
def _parse(sql: str) -> exp.Expression:
    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    assert isinstance(tree, exp.Expression)
    return tree


_LATEST_LABELS = """latest AS (
  SELECT request_id, churned FROM labels
  WHERE dt BETWEEN @labels_from AND @until AND request_id IS NOT NULL AND churned IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY source DESC, observed_at DESC) = 1
)"""

UNKNOWN_IDS_SQL = f"""
SELECT i.request_id FROM {IMPORT_IDS} AS i
WHERE NOT EXISTS (SELECT 1 FROM request_log AS r WHERE r.dt <= @until AND r.request_id = i.request_id)
"""

PERFORMANCE_SQL = f"""
WITH {_LATEST_LABELS},
joined AS (
  SELECT r.request_id, r.ts, r.model_version, r.churn_probability AS p, r.churn_prediction AS predicted, l.churned
  FROM request_log AS r LEFT JOIN latest AS l ON r.request_id = l.request_id
  WHERE r.dt BETWEEN @start AND @until AND (r.request_id IS NULL OR l.churned IS NOT NULL)
),
first_logged AS (
  SELECT request_id IS NULL AS unreadable, model_version, p, predicted, IF(churned, 1, 0) AS y FROM joined
  WHERE TRUE
  QUALIFY request_id IS NULL OR ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY ts) = 1
),
grouped AS (
  SELECT unreadable, p, predicted, COUNT(*) AS n, SUM(y) AS pos FROM first_logged
  WHERE unreadable OR (model_version = @model_version AND p IS NOT NULL)
  GROUP BY unreadable, p, predicted
),
ranked AS (
  SELECT unreadable, p, predicted, n, pos,
    SUM(n) OVER (PARTITION BY unreadable ORDER BY p RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
      - SUM(n) OVER (PARTITION BY unreadable, p) AS below,
    SUM(n) OVER (PARTITION BY unreadable, p) AS tied
  FROM grouped
)
SELECT
  COALESCE(SUM(IF(unreadable, 0, n)), 0) AS n,
  COALESCE(SUM(IF(unreadable, 0, pos)), 0) AS positives,
  COALESCE(SUM(IF(unreadable, 0, IF(predicted = 1, pos, n - pos))), 0) AS correct,
  COALESCE(SUM(IF(unreadable, 0, n * p)), 0) AS sum_p,
  COALESCE(SUM(IF(unreadable, 0, pos * (1 - p) * (1 - p) + (n - pos) * p * p)), 0) AS sum_squared_error,
  COALESCE(SUM(IF(unreadable, 0, pos * (2 * below + tied + 1))), 0) AS positive_rank_sum_x2,
  COALESCE(SUM(IF(unreadable, n, 0)), 0) AS unreadable_rows,
  COALESCE(SUM(IF(unreadable, 0, pos * POW(1 - p, 4) + (n - pos) * POW(p, 4))), 0) AS sum_fourth_power_error
FROM ranked
"""

_FEATURES = ", ".join(f"r.{name}" for name in schema.FEATURE_NAMES)
_OUT_FEATURES = ", ".join(schema.FEATURE_NAMES)
RECENT_LABELLED_SQL = f"""
WITH {_LATEST_LABELS},
joined AS (
  SELECT r.request_id, r.ts, {_FEATURES}, l.churned
  FROM request_log AS r JOIN latest AS l ON r.request_id = l.request_id
  WHERE r.dt BETWEEN @labels_from AND @until AND r.ts >= @since_ts
  QUALIFY ROW_NUMBER() OVER (PARTITION BY r.request_id ORDER BY r.ts) = 1
),
recent AS (SELECT * FROM joined ORDER BY ts DESC, request_id DESC LIMIT @max_rows)
SELECT request_id AS {schema.ID_COLUMN}, {_OUT_FEATURES},
  IF(churned, '{schema.TARGET_POSITIVE}', 'No') AS {schema.TARGET}, ts
FROM recent ORDER BY ts, request_id
"""


def unknown_ids(ids: list[str], until: date) -> Query:
    """The ids among `ids` that no request logged up to day `until` carries (an anti-join)."""
    scans = {tables.REQUEST_LOG.name: Scan(None, until)}
    return Query("unknown_ids", UNKNOWN_IDS_SQL, {"until": until}, scans, ids)


def performance(model_version: int, start: date, until: date) -> Query:
    """Aggregates of `model_version`'s labelled requests logged on days start..until (one row).

    n, positives, correct (served prediction = outcome), sum of probabilities, sum of squared errors
    (Brier × n) and of their squares (the Brier score's variance), twice the rank sum of the positives
    (ties get their average rank: the Mann-Whitney U form of ROC AUC) and the count of unreadable log
    lines. Labels imported before `start` cannot
    belong to these requests, so the labels scan starts there too.
    """
    scans = {tables.REQUEST_LOG.name: Scan(start, until), tables.LABELS.name: Scan(start, until)}
    params = {"model_version": model_version, "start": start, "until": until, "labels_from": start}
    return Query("performance", PERFORMANCE_SQL, params, scans)


def recent_labelled(since: datetime, until: date, max_rows: int) -> Query:
    """The newest `max_rows` labelled requests logged since `since`, oldest first: id, features, Churn, ts."""
    first = since.date()
    scans = {tables.REQUEST_LOG.name: Scan(first, until), tables.LABELS.name: Scan(first, until)}
    params = {"labels_from": first, "until": until, "since_ts": since.timestamp(), "max_rows": max_rows}
    return Query("recent_labelled", RECENT_LABELLED_SQL, params, scans)
