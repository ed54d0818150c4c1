"""The drift monitor's core: window reading, the Evidently adapter, the drift policy, reports.

Pure logic (`window`, `policy`, `views`) is kept apart from the adapters that touch GCS and MLflow
(`logstore`, `reports`, `tracking`); `check` wires them, asking for a retrain through
`retraining.request_store`.
"""
