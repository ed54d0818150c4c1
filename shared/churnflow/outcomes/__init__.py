"""The request log and the labels as tables, queried by an engine (DuckDB embedded, or BigQuery)."""
