import json

from churnflow.core import schema
from churnflow.outcomes import tables
from churnflow.storage import labels, request_log


def test_request_log_columns_are_the_record_fields_with_feature_types_from_the_schema():
    columns = dict(tables.REQUEST_LOG.columns)
    assert tuple(columns) == request_log.RECORD_FIELDS
    assert columns["tenure"] == "INTEGER" and columns["SeniorCitizen"] == "INTEGER"
    assert columns["MonthlyCharges"] == "FLOAT" and columns["Contract"] == "STRING"
    assert all(name in columns for name in schema.FEATURE_NAMES)


def test_labels_columns_are_the_label_fields():
    assert [c["name"] for c in tables.bigquery_schema("labels")] == list(labels.FIELDS)
    assert tables.duckdb_columns("labels") == {
        "request_id": "VARCHAR",
        "churned": "BOOLEAN",
        "observed_at": "TIMESTAMPTZ",
    }


def test_the_cli_prints_the_bigquery_schema_and_the_partition_spec(capsys):
    assert tables.main(["schema", "request_log"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == tables.bigquery_schema("request_log")
    assert {"name": "request_id", "type": "STRING", "mode": "NULLABLE"} in printed
    assert tables.main(["partitions", "request_log"]) == 0
    assert capsys.readouterr().out.strip() == "{dt:DATE}/{hour:INTEGER}"
    assert tables.hive_partition_spec("labels") == "{dt:DATE}"
