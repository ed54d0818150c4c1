"""Where everything lives in the one GCS bucket: the storage layout, defined once.

Training data, MLflow artifacts, request logs (batched objects partitioned by date and hour),
ground-truth labels, drift reports and small state objects each have their own prefix.
"""

from __future__ import annotations

from datetime import datetime

TRAINING_DATA = "data/training/telco_churn.csv"
REFERENCE_PREFIX = "data/reference/"
MLFLOW_ARTIFACTS_PREFIX = "mlflow"
REQUEST_LOG_PREFIX = "requests/"
LABELS_PREFIX = "labels/"
REPORTS_PREFIX = "reports/"
STATE_PREFIX = "state/"


def gs_uri(bucket: str, name: str) -> str:
    """The gs:// URI of object `name` in `bucket`."""
    return f"gs://{bucket}/{name}"


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split `gs://bucket/name` into (bucket, name); raises ValueError on anything else."""
    if not uri.startswith("gs://") or "/" not in uri[5:] or uri[5:].startswith("/"):
        raise ValueError(f"not a gs://bucket/object URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    if not name:
        raise ValueError(f"gs:// URI names no object: {uri!r}")
    return bucket, name


def reference_object(fingerprint: str) -> str:
    """The training rows (features + target) of a model, keyed by their data fingerprint."""
    return f"{REFERENCE_PREFIX}{fingerprint}.parquet"


def mlflow_artifacts_uri(bucket: str) -> str:
    """The artifact root the MLflow server proxies to."""
    return gs_uri(bucket, MLFLOW_ARTIFACTS_PREFIX)


def request_log_partition(when: datetime) -> str:
    """The prefix holding request-log batches written during the hour of `when` (UTC)."""
    return f"{REQUEST_LOG_PREFIX}dt={when:%Y-%m-%d}/hour={when:%H}/"


def request_log_object(when: datetime, batch_id: str) -> str:
    """One batch of logged requests; names sort by time within a partition."""
    return f"{request_log_partition(when)}{when:%Y%m%dT%H%M%S%f}Z-{batch_id}.jsonl.gz"


def labels_object(imported_at: datetime, import_id: str) -> str:
    """One imported batch of ground-truth labels."""
    return f"{LABELS_PREFIX}dt={imported_at:%Y-%m-%d}/{imported_at:%Y%m%dT%H%M%S}Z-{import_id}.jsonl.gz"


def state_object(name: str) -> str:
    """A small JSON state object (locks, pointers) updated with generation preconditions."""
    return f"{STATE_PREFIX}{name}.json"
