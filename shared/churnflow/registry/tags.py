"""Every MLflow tag name ChurnFlow writes or reads, defined once.

Plain strings with no imports, so the serving side (which has no MLflow) reads the same names the
training side writes. A `_PREFIX` name is followed by a metric name, e.g. `metric.roc_auc`.
"""

PREFIX = "churnflow."
"""Run tags under this prefix are copied onto the registered model version."""

# Model version tags written at registration, read by serving and the monitor.
SCORER_ARTIFACT = "churnflow.scorer_artifact"
"""Where the compiled scorer lies in the run's artifacts."""
DATA_FINGERPRINT = "churnflow.data_fingerprint"
CODE_VERSION = "churnflow.code_version"
REFERENCE_URI = "churnflow.reference_uri"
"""The drift reference: the rows the version was trained on."""
METRIC_PREFIX = "metric."
"""The version's evaluation metrics, served by /model."""

# Model version tags written by the retrain job: lineage and the quality gate's decision.
TRIGGER_MESSAGE_ID = "churnflow.trigger_message_id"
TRIGGER_REASON = "churnflow.trigger_reason"
DRIFT_REPORT_URI = "churnflow.drift_report_uri"
RECENT_TRAIN_ROWS = "churnflow.recent_train_rows"
RECENT_HOLDOUT_ROWS = "churnflow.recent_holdout_rows"
EVALUATION_FINGERPRINT = "churnflow.evaluation_fingerprint"
CHALLENGER_EVAL_PREFIX = "churnflow.challenger_eval."
CHALLENGER_RECENT_PREFIX = "churnflow.challenger_recent."
CHAMPION_EVAL_PREFIX = "churnflow.champion_eval."
CHAMPION_RECENT_PREFIX = "churnflow.champion_recent."
CHAMPION_VERSION = "churnflow.champion_version"
GATE_DECISION = "churnflow.gate_decision"
GATE_REASON = "churnflow.gate_reason"

# Model version tag written by `churnflow promote`.
PROMOTED_BY = "churnflow.promoted_by"

# Run tags of the monitor's MLflow runs (one run per drift check).
CHECK_ID = "churnflow.check_id"
CHECK_STATUS = "churnflow.status"
RULES_FIRED = "churnflow.rules_fired"
CHECKED_MODEL = "churnflow.model"
REPORT_URI = "churnflow.report_uri"
TRIGGER_ACTION = "churnflow.trigger"
