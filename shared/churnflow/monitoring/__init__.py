"""The drift monitor's core: window reading, the Evidently adapter, the drift policy, reports, the trigger.

Pure logic (`window`, `policy`, `trigger`, `views`) is kept apart from the adapters that touch GCS,
Pub/Sub and MLflow (`logstore`, `reports`, `statestore`, `publish`, `tracking`); `check` wires them.
"""
