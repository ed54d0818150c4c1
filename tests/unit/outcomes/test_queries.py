"""The outcome queries in both dialects: the DuckDB form runs here on in-memory tables; the BigQuery
form is only compiled and checked (parsed for BigQuery, partition filters present, qualified tables)."""

from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pytest
import sqlglot
from sklearn.metrics import roc_auc_score
from sqlglot import exp

from churnflow.core import schema
from churnflow.outcomes import queries, tables
from churnflow.outcomes.engine import BigQueryEngine
from churnflow.outcomes.labelled import PerformanceCounts
from churnflow.settings import CommonSettings

DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
ALL = [
    queries.unknown_ids(["a"], DAY),
    queries.performance(3, DAY - timedelta(days=30), DAY),
    queries.recent_labelled(NOW - timedelta(days=7), DAY, 100),
]


def memory_tables(requests, labels):
    """DuckDB with `request_log` and `labels` as typed in-memory tables."""
    con = duckdb.connect()
    for table, rows in ((tables.REQUEST_LOG, requests), (tables.LABELS, labels)):
        columns = {**tables.duckdb_columns(table.name), **{k: tables.DUCKDB_TYPES[t] for k, t in table.partitions}}
        if table is tables.LABELS:
            columns["source"] = "VARCHAR"
        con.execute(f"CREATE TABLE {table.name} ({', '.join(f'{k} {v}' for k, v in columns.items())})")
        for row in rows:
            names = list(row)
            con.execute(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [row[n] for n in names],
            )
    return con


def request(i, p, day=DAY, version=3, ts=None):
    return {
        "request_id": f"r{i}",
        "ts": ts if ts is not None else NOW.timestamp() + i,
        "model_version": version,
        **schema.EXAMPLE_CUSTOMER,
        "tenure": i % 100,
        "churn_probability": p,
        "churn_prediction": int(p >= 0.5),
        "dt": day,
        "hour": 10,
    }


def label(i, churned, source="labels/dt=2026-11-20/20261120T120000Z-a.jsonl.gz", day=DAY):
    return {"request_id": f"r{i}", "churned": churned, "observed_at": NOW, "dt": day, "source": source}


def run(con, query):
    return con.execute(query.to("duckdb"), query.params).fetchall()


def counts(con, query):
    row = con.execute(query.to("duckdb"), query.params).fetch_df().iloc[0]
    return PerformanceCounts(
        *(int(row[k]) for k in ("n", "positives", "correct")),
        float(row["sum_p"]),
        float(row["sum_squared_error"]),
        int(row["positive_rank_sum_x2"]),
        int(row["unreadable_rows"]),
        0,
        float(row["sum_fourth_power_error"]),
    )


def test_performance_matches_a_hand_computation_and_sklearn_with_ties():
    rng = np.random.default_rng(0)
    p = np.round(rng.random(400), 2)  # many ties
    y = (rng.random(400) < p).astype(int)
    requests = [request(i, float(p[i])) for i in range(400)] + [request(900, 0.9, version=2)]
    requests.append({**request(0, 0.99), "ts": NOW.timestamp() + 1e6})  # logged twice: the first record counts
    requests.append({"request_id": None, "dt": DAY, "hour": 10})  # an unreadable line
    labels = [label(i, bool(y[i])) for i in range(400)] + [label(900, True)]
    labels.append(label(1, not y[1], source="labels/dt=2026-11-19/20261119T000000Z-old.jsonl.gz"))  # overridden
    con = memory_tables(requests, labels)

    got = counts(con, queries.performance(3, DAY - timedelta(days=30), DAY))

    assert (got.n, got.positives, got.unreadable_rows) == (400, int(y.sum()), 1)
    assert got.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert got.correct == int(((p >= 0.5).astype(int) == y).sum())
    assert got.sum_probability == pytest.approx(p.sum())
    assert got.sum_squared_error == pytest.approx(((p - y) ** 2).sum())
    assert got.sum_fourth_power_error == pytest.approx(((p - y) ** 4).sum())


def test_performance_reads_only_its_window():
    con = memory_tables([request(0, 0.9, day=DAY - timedelta(days=40))], [label(0, True)])
    assert counts(con, queries.performance(3, DAY - timedelta(days=30), DAY)).n == 0


def test_unknown_ids_is_an_anti_join_over_the_log_up_to_a_day():
    con = memory_tables([request(0, 0.5), request(1, 0.5, day=DAY + timedelta(days=1))], [])
    query = queries.unknown_ids(["r0", "r1", "r9"], DAY)
    con.register(queries.IMPORT_IDS, con.sql("SELECT unnest($ids) AS request_id", params={"ids": query.ids}).df())
    assert {r for (r,) in run(con, query)} == {"r1", "r9"}


def test_recent_labelled_keeps_the_newest_within_cap_and_age_oldest_first():
    old = (NOW - timedelta(days=10)).timestamp()
    requests = [request(i, 0.5) for i in range(5)] + [request(7, 0.5, day=DAY - timedelta(days=10), ts=old)]
    con = memory_tables(requests, [label(i, i % 2 == 0) for i in (0, 1, 2, 3, 7)])
    rows = con.execute(*_sql(queries.recent_labelled(NOW - timedelta(days=7), DAY, 3))).fetch_df()
    assert rows[schema.ID_COLUMN].tolist() == ["r1", "r2", "r3"]
    assert list(rows.columns) == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET, "ts"]
    assert rows["ts"].is_monotonic_increasing
    assert rows[schema.TARGET].tolist() == ["No", "Yes", "No"]


def _sql(query):
    return query.to("duckdb"), query.params


@pytest.mark.parametrize("query", ALL, ids=lambda q: q.name)
def test_every_query_compiles_for_bigquery_with_partition_filters_on_qualified_tables(query):
    engine = BigQueryEngine(CommonSettings(CHURNFLOW_PROJECT="proj", bigquery_dataset="ds"))
    tree = sqlglot.parse_one(engine.compile(query), read="bigquery")
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    stored = [t for t in tree.find_all(exp.Table) if t.name not in ctes]
    qualified = {f"{t.catalog}.{t.db}.{t.name}" for t in stored}
    expected = {f"proj.ds.{name}" for name in query.scans}
    assert qualified == expected and "proj.ds.request_log" in qualified
    for table in stored:  # the nearest enclosing WHERE filters on the partition column
        select = table.find_ancestor(exp.Select)
        while select is not None and select.args.get("where") is None:
            select = select.find_ancestor(exp.Select)
        assert select is not None, table.sql("bigquery")
        assert any(c.name == "dt" for c in select.args["where"].find_all(exp.Column)), table.sql("bigquery")
    for name in query.params:
        assert f"@{name}" in engine.compile(query)


def test_a_bigquery_label_source_replaces_the_imported_labels():
    settings = CommonSettings(CHURNFLOW_PROJECT="proj", labels_source="wh.billing.churn_outcomes")
    sql = BigQueryEngine(settings).compile(queries.performance(3, DAY, DAY))
    assert "`wh.billing.churn_outcomes`" in sql and "proj.churnflow.labels" not in sql
    assert sqlglot.parse_one(sql, read="bigquery") is not None


def test_the_duckdb_form_is_the_transpiled_source():
    for query in ALL:
        assert "$until" in query.to("duckdb") and "@until" not in query.to("duckdb")
