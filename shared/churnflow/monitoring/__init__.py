"""The drift monitor: window choice, the Evidently adapter, the drift policy, labelled performance, reports.

Pure logic (`window`, `policy`, `views`) is kept apart from the adapters that touch GCS and MLflow
(`champion`, `performance`, `reports`, `tracking`); the request log is read through
`storage.request_log_reader`; `check` wires them, asking for a retrain through
`retraining.request_store`.
"""
