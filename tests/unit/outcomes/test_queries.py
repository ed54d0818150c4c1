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
from churnflow.outcomes.labelled import counts_of_rows
from churnflow.settings import CommonSettings

DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
KEY = "20261120T120000Z-a"
ALL = [
    queries.matched_requests(DAY - timedelta(days=1), DAY, KEY, None),
    queries.performance(3, DAY - timedelta(days=30), DAY),
    queries.recent_labelled(NOW - timedelta(days=7), DAY, 100),
]


def memory_tables(**rows):
    """DuckDB with the named tables (request_log, labelled, import_labels) as typed in-memory tables."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, content in rows.items():
        if name == queries.IMPORT_LABELS:
            columns = {"request_id": "VARCHAR", "churned": "BOOLEAN", "observed_at": "TIMESTAMPTZ"}
        else:
            table = tables.TABLES[name]
            columns = {**tables.duckdb_columns(name), **{k: tables.DUCKDB_TYPES[t] for k, t in table.partitions}}
        con.execute(f"CREATE TABLE {name} ({', '.join(f'{k} {v}' for k, v in columns.items())})")
        for row in content:
            names = list(row)
            con.execute(
                f"INSERT INTO {name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
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
    }


def example(i, p, churned, key=KEY, **kwargs):
    """A labelled example: a logged request with its label, from import `key`."""
    return request(i, p, **kwargs) | {"churned": churned, "observed_at": NOW, "import_key": key}


def run(con, query):
    return con.execute(query.to("duckdb"), query.params).fetchall()


def counts(con, query):
    return counts_of_rows(con.execute(query.to("duckdb"), query.params).to_arrow_table().to_pylist(), 0)


def test_performance_matches_a_hand_computation_and_sklearn_with_ties():
    rng = np.random.default_rng(0)
    p = np.round(rng.random(400), 2)  # many ties
    y = (rng.random(400) < p).astype(int)
    rows = [example(i, float(p[i]), bool(y[i])) for i in range(400)] + [example(900, 0.9, True, version=2)]
    rows.append(example(1, float(p[1]), not y[1], key="20261119T000000Z-old"))  # overridden by the later import
    con = memory_tables(labelled=rows)

    got = counts(con, queries.performance(3, DAY - timedelta(days=30), DAY))

    assert (got.n, got.positives) == (400, int(y.sum()))
    assert got.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert got.correct == int(((p >= 0.5).astype(int) == y).sum())
    assert got.sum_probability == pytest.approx(p.sum())
    assert got.sum_squared_error == pytest.approx(((p - y) ** 2).sum())
    assert got.sum_fourth_power_error == pytest.approx(((p - y) ** 4).sum())


def test_performance_sums_spiegelhalters_statistic_and_each_segment_in_the_same_query():
    rng = np.random.default_rng(1)
    p = np.round(rng.random(300), 3)
    y = (rng.random(300) < p).astype(int)
    contracts = np.array(["Month-to-month", "One year", "Two year"])[np.arange(300) % 3]
    rows = [example(i, float(p[i]), bool(y[i])) | {"Contract": str(contracts[i])} for i in range(300)]
    rows.append(example(1, float(p[1]), not y[1], key="20261119T000000Z-old"))  # overridden by the later import
    rows.append(example(901, 0.9, True, version=2) | {"Contract": "One year"})  # another model's request
    con = memory_tables(labelled=rows)
    query = queries.performance(3, DAY - timedelta(days=30), DAY)

    got = con.execute(query.to("duckdb"), query.params).fetch_df()
    [overall] = got[got["feature"].isna()].to_dict("records")
    assert overall["reliability_sum"] == pytest.approx(((y - p) * (1 - 2 * p)).sum())
    assert overall["reliability_variance"] == pytest.approx(((1 - 2 * p) ** 2 * p * (1 - p)).sum())
    assert overall["sum_variance"] == pytest.approx((p * (1 - p)).sum())
    segments = got[got["feature"].notna()].set_index(["feature", "level"])
    for contract in contracts[:3]:
        inside = contracts == contract
        one = segments.loc[("Contract", contract)]
        assert (one["n"], one["positives"]) == (inside.sum(), y[inside].sum())
        assert one["sum_p"] == pytest.approx(p[inside].sum())
        assert one["sum_variance"] == pytest.approx((p[inside] * (1 - p[inside])).sum())
    bins = np.minimum(np.floor(p * queries.CALIBRATION_BINS), queries.CALIBRATION_BINS - 1).astype(int)
    for b in range(queries.CALIBRATION_BINS):
        one = segments.loc[(queries.PROBABILITY_BIN, str(b))]
        assert (one["n"], one["positives"]) == ((bins == b).sum(), y[bins == b].sum())
    assert segments.loc[("SeniorCitizen", "0"), "n"] == 300  # an integer category, as text
    assert set(segments.index.get_level_values(0)) == {*schema.CATEGORICAL_NAMES, queries.PROBABILITY_BIN}
    assert segments.groupby(level=0)["n"].sum().eq(300).all()  # each feature's levels partition the requests


def test_the_bigquery_performance_query_groups_every_segment_in_one_pass():
    sql = queries.performance(3, DAY, DAY).to("bigquery")
    tree = sqlglot.parse_one(sql, read="bigquery")
    assert len(list(tree.find_all(exp.GroupingSets))) == 1
    # the ids labelled more than once, then the others and those (deduplicated by a window) apart
    assert sum(1 for t in tree.find_all(exp.Table) if t.name == tables.LABELLED.name) == 3
    assert len(list(tree.find_all(exp.Window))) == 1 + 3  # one dedup window; 3 for the AUC's ranks
    for name in (*schema.CATEGORICAL_NAMES, queries.PROBABILITY_BIN):
        assert f"GROUPING({name}) = 0 THEN '{name}'" in sql


def test_performance_reads_only_its_window():
    con = memory_tables(labelled=[example(0, 0.9, True, day=DAY - timedelta(days=40))])
    assert counts(con, queries.performance(3, DAY - timedelta(days=30), DAY)).n == 0


def test_matched_requests_joins_the_first_record_of_each_named_request_and_keeps_unreadable_lines():
    logged = [request(0, 0.3), {**request(0, 0.3), "ts": NOW.timestamp() + 99}, request(1, 0.6)]
    logged += [request(2, 0.6, day=DAY - timedelta(days=3)), {"request_id": None, "dt": DAY}]
    imported = [{"request_id": f"r{i}", "churned": i == 0, "observed_at": NOW} for i in (0, 2, 9)]
    con = memory_tables(request_log=logged, import_labels=imported)

    query = queries.matched_requests(DAY - timedelta(days=1), DAY, KEY, None)
    rows = con.execute(query.to("duckdb"), query.params).fetch_df()

    assert list(rows.columns) == [*tables.LABELLED_FIELDS, "dt"]
    assert sorted(rows["request_id"].fillna("-")) == ["-", "r0"]  # r2 logged before the span, r9 never
    [matched] = rows[rows["request_id"] == "r0"].to_dict("records")
    assert (matched["ts"], matched["churned"], matched["import_key"]) == (NOW.timestamp(), True, KEY)


def test_recent_labelled_keeps_the_newest_within_cap_and_age_oldest_first():
    old = (NOW - timedelta(days=10)).timestamp()
    rows = [example(i, 0.5, i % 2 == 0) for i in (0, 1, 2, 3)]
    rows += [
        example(3, 0.5, True, key="20261119T000000Z-old"),
        example(7, 0.5, True, day=DAY - timedelta(days=10), ts=old),
    ]
    con = memory_tables(labelled=rows)
    got = con.execute(*_sql(queries.recent_labelled(NOW - timedelta(days=7), DAY, 3))).fetch_df()
    assert got[schema.ID_COLUMN].tolist() == ["r1", "r2", "r3"]
    assert list(got.columns) == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET, "ts", "model_version"]
    assert got[schema.TARGET].tolist() == ["No", "Yes", "No"]
    assert got["ts"].tolist() == [NOW.timestamp() + i for i in (1, 2, 3)]
    assert got["model_version"].tolist() == [3, 3, 3]


def _sql(query):
    return query.to("duckdb"), query.params


@pytest.mark.parametrize("query", ALL, ids=lambda q: q.name)
def test_every_query_compiles_for_bigquery_with_partition_filters_on_qualified_tables(query):
    engine = BigQueryEngine(CommonSettings(CHURNFLOW_PROJECT="proj", bigquery_dataset="ds"))
    tree = sqlglot.parse_one(engine.compile(query), read="bigquery")
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    stored = [t for t in tree.find_all(exp.Table) if t.name not in ctes and t.name != queries.IMPORT_LABELS]
    qualified = {f"{t.catalog}.{t.db}.{t.name}" for t in stored}
    reads = {"matched_requests": {"request_log"}}.get(query.name, {"labelled", "labels"})
    assert qualified == {f"proj.ds.{name}" for name in reads}
    for table in stored:  # the nearest enclosing WHERE filters on the partition column
        select = table.find_ancestor(exp.Select)
        while select is not None and select.args.get("where") is None:
            select = select.find_ancestor(exp.Select)
        assert select is not None, table.sql("bigquery")
        assert any(c.name == "dt" for c in select.args["where"].find_all(exp.Column)), table.sql("bigquery")
    for name in query.params:
        assert f"@{name}" in engine.compile(query)


def test_bigquery_reads_labelled_examples_of_committed_imports_only():
    sql = BigQueryEngine(CommonSettings(CHURNFLOW_PROJECT="proj")).compile(queries.performance(3, DAY, DAY))
    assert "proj.churnflow.request_log" not in sql
    assert "import_key IN (SELECT REGEXP_EXTRACT(_FILE_NAME" in sql and "proj.churnflow.labels" in sql


def test_bigquery_import_labels_are_a_query_parameter():
    sql = BigQueryEngine(CommonSettings(CHURNFLOW_PROJECT="proj")).compile(ALL[0])
    assert f"UNNEST(@{queries.IMPORT_LABELS})" in sql


def test_a_bigquery_label_source_replaces_the_imported_labels():
    settings = CommonSettings(CHURNFLOW_PROJECT="proj", labels_source="wh.billing.churn_outcomes")
    sql = BigQueryEngine(settings).compile(queries.performance(3, DAY, DAY))
    assert "`wh.billing.churn_outcomes`" in sql and "proj.churnflow.labels" not in sql
    assert "proj.churnflow.request_log" in sql
    assert sqlglot.parse_one(sql, read="bigquery") is not None


def test_the_duckdb_form_is_the_transpiled_source():
    for query in ALL:
        assert "$first_day" in query.to("duckdb") and "@first_day" not in query.to("duckdb")


def test_a_request_labelled_twice_counts_once_with_its_latest_label_overall_and_in_its_segments():
    older, newer = "20261119T000000Z-a", "20261120T000000Z-b"
    labelled = [example(0, 0.2, False, key=older), example(0, 0.2, True, key=newer), example(1, 0.7, False)]
    query = queries.performance(3, DAY, DAY)
    rows = memory_tables(labelled=labelled).execute(query.to("duckdb"), query.params).fetch_df()

    overall = rows[rows["feature"].isna()].iloc[0]
    assert (overall["n"], overall["positives"]) == (2, 1)
    by_bin = rows[rows["feature"] == queries.PROBABILITY_BIN].set_index("level")
    assert (by_bin.loc["2", "n"], by_bin.loc["2", "positives"]) == (1, 1)  # r0, churned by its newer label
    assert (by_bin.loc["7", "n"], by_bin.loc["7", "positives"]) == (1, 0)
