"""The drift monitor: window reading, the Evidently adapter, the drift policy, reports, performance.

Pure logic (`window`, `policy`, `views`) is kept apart from the adapters that touch GCS and MLflow
(`logstore`, `champion`, `reports`, `tracking`); `check` wires them, and asks for a retrain through
`retraining.request_store`.
"""
