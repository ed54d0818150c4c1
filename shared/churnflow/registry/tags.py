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

# Model version tags written by the retrain job: lineage, the out-of-time cut and the gate's decision.
TRIGGER_MESSAGE_ID = "churnflow.trigger_message_id"
TRIGGER_REASON = "churnflow.trigger_reason"
TRIGGER_RULES = "churnflow.trigger_rules"
DRIFT_REPORT_URI = "churnflow.drift_report_uri"
RECENT_TRAIN_ROWS = "churnflow.recent_train_rows"
BASE_TRAIN_ROWS = "churnflow.base_train_rows"
BASE_WEIGHT = "churnflow.base_weight"
"""Weight of each base row in training (recent rows weigh 1)."""
TRAIN_RECENT_FIRST_TS = "churnflow.train_recent_first_ts"
TRAIN_RECENT_LAST_TS = "churnflow.train_recent_last_ts"
"""Logged time (Unix seconds) of the newest recent request trained on: no later evaluation row is older."""
OOT_CUT_TS = "churnflow.oot_cut_ts"
"""The out-of-time cut: the evaluation rows are the labelled requests logged at or after it."""
OOT_LAST_TS = "churnflow.oot_last_ts"
OOT_ROWS = "churnflow.oot_rows"
EVALUATION_FINGERPRINT = "churnflow.evaluation_fingerprint"
CHALLENGER_OOT_PREFIX = "churnflow.challenger_oot."
CHAMPION_OOT_PREFIX = "churnflow.champion_oot."
CHALLENGER_BASE_PREFIX = "churnflow.challenger_base."
CHAMPION_BASE_PREFIX = "churnflow.champion_base."
CHAMPION_VERSION = "churnflow.champion_version"
GATE_DECISION = "churnflow.gate_decision"
GATE_REASON = "churnflow.gate_reason"
GATE_CHECKS = "churnflow.gate_checks"
"""Each comparison of the gate and its verdict, e.g. `oot_auc=pass,oot_brier=pass,base=pass,gain=fail`."""

# Model version tag written by `churnflow promote`.
PROMOTED_BY = "churnflow.promoted_by"

# Run tags of the monitor's MLflow runs (one run per drift check).
CHECK_ID = "churnflow.check_id"
CHECK_STATUS = "churnflow.status"
RULES_FIRED = "churnflow.rules_fired"
"""Drift and performance rules that fired, comma-separated."""
PERFORMANCE_REASON = "churnflow.performance_reason"
CHECKED_MODEL = "churnflow.model"
REPORT_URI = "churnflow.report_uri"
TRIGGER_ACTION = "churnflow.trigger"
