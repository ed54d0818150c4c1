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


def test_labelled_examples_are_the_logged_request_its_label_and_its_import():
    columns = dict(tables.LABELLED.columns)
    assert tuple(columns) == tables.LABELLED_FIELDS
    assert tables.LABELLED_FIELDS[:3] == ("request_id", "ts", "model_version")
    assert all(columns[name] == dict(tables.REQUEST_LOG.columns)[name] for name in schema.FEATURE_NAMES)
    assert (columns["churned"], columns["observed_at"], columns["import_key"]) == ("BOOLEAN", "TIMESTAMP", "STRING")
    assert tables.LABELLED.format == "PARQUET" and tables.LABELLED.partitions == (("dt", "DATE"),)
    assert tables.arrow_schema("labelled").names == list(tables.LABELLED_FIELDS)
    assert str(tables.arrow_schema("labelled").field("observed_at").type) == "timestamp[us, tz=UTC]"


def test_the_cli_prints_each_tables_source_format(capsys):
    assert tables.main(["format", "labelled"]) == 0
    assert tables.main(["format", "labels"]) == 0
    assert capsys.readouterr().out.split() == ["PARQUET", "NEWLINE_DELIMITED_JSON"]
