"""Where everything lives in the one GCS bucket: every object name, built here and nowhere else.

Training data, MLflow artifacts, request logs (batched objects partitioned by date and hour),
ground-truth labels (by import day), the labelled examples each label import materialises (by the
request's day), drift reports and small state objects each have their own prefix. Times in
names are UTC in one format (`format_time`/`parse_time`); every id that becomes part of a name
must be a safe token (letters, digits, `.`, `_`, `-`; no slash, no leading dot), so no caller can
reach outside its prefix.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

TRAINING_DATA = "data/training/telco_churn.csv"
REFERENCE_PREFIX = "data/reference/"
MLFLOW_ARTIFACTS_PREFIX = "mlflow"
REQUEST_LOG_PREFIX = "requests/"
LABELS_PREFIX = "labels/"
LABELLED_PREFIX = "labelled/"
REPORTS_PREFIX = "reports/"
CHECKS_PREFIX = f"{REPORTS_PREFIX}checks/"
REPORT_INDEX = f"{REPORTS_PREFIX}index.json"
LATEST_REPORT = f"{REPORTS_PREFIX}latest.json"
EVIDENTLY_WORKSPACE_PREFIX = "evidently"
STATE_PREFIX = "state/"
RETRAIN_LOCK = f"{STATE_PREFIX}retrain-lock.json"
MESSAGES_PREFIX = f"{STATE_PREFIX}messages/"
RUN_RECORDS_PREFIX = f"{STATE_PREFIX}retrain-runs/"

TIME_FORMAT = "%Y%m%dT%H%M%S"
_TIME = re.compile(r"\A(\d{8}T\d{6})(\d{6})?Z\Z")
_TOKEN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_LABELLED = re.compile(
    r"\A" + re.escape(LABELLED_PREFIX) + r"dt=\d{4}-\d{2}-\d{2}/(\d{8}T\d{6}Z-[A-Za-z0-9._-]+)\.parquet\Z"
)


def token(value: str) -> str:
    """`value` if it is safe inside an object name; raises ValueError otherwise."""
    if not _TOKEN.match(value):
        raise ValueError(f"not a safe object-name token: {value!r}")
    return value


def format_time(when: datetime, microseconds: bool = False) -> str:
    """`when` (UTC) as names carry it: 20261105T140307Z, or 20261105T140307123456Z with microseconds."""
    return f"{when.strftime(TIME_FORMAT)}{when:%f}Z" if microseconds else f"{when.strftime(TIME_FORMAT)}Z"


def parse_time(text: str) -> datetime:
    """The UTC time of a `format_time` stamp (either precision); raises ValueError on anything else."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"not a name time stamp: {text!r}")
    seconds, micros = match.groups()
    return datetime.strptime(seconds, TIME_FORMAT).replace(microsecond=int(micros or 0), tzinfo=UTC)


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
    return f"{REFERENCE_PREFIX}{token(fingerprint)}.parquet"


def evidently_workspace_uri(bucket: str) -> str:
    """The Evidently Workspace of the drift and performance history (a directory of projects and runs)."""
    return gs_uri(bucket, EVIDENTLY_WORKSPACE_PREFIX)


def mlflow_artifacts_uri(bucket: str) -> str:
    """The artifact root the MLflow server proxies to."""
    return gs_uri(bucket, MLFLOW_ARTIFACTS_PREFIX)


def request_log_partition(when: datetime) -> str:
    """The prefix holding request-log batches written during the hour of `when` (UTC)."""
    return f"{REQUEST_LOG_PREFIX}dt={when:%Y-%m-%d}/hour={when:%H}/"


def request_log_object(when: datetime, batch_id: str) -> str:
    """One batch of logged requests; names sort by time within a partition."""
    return f"{request_log_partition(when)}{format_time(when, microseconds=True)}-{token(batch_id)}.jsonl.gz"


def request_log_time(name: str) -> datetime | None:
    """The time in a `request_log_object` name, or None if the name carries none."""
    try:
        return parse_time(name.rsplit("/", 1)[-1].partition("-")[0])
    except ValueError:
        return None


def import_key(imported_at: datetime, import_id: str) -> str:
    """The name of one label import, `<import time>-<id>`: names sort by import time."""
    return f"{format_time(imported_at)}-{token(import_id)}"


def labels_object(imported_at: datetime, import_id: str) -> str:
    """One imported batch of ground-truth labels (the system of record, and the import's commit marker)."""
    return labels_object_of(import_key(imported_at, import_id))


def labels_object_of(key: str) -> str:
    """The labels object of the import named `key` (see `import_key`)."""
    return f"{LABELS_PREFIX}dt={_key_time(key):%Y-%m-%d}/{key}.jsonl.gz"


def labelled_object(request_day: date, key: str) -> str:
    """The labelled examples import `key` holds for requests logged on `request_day` (Parquet)."""
    return f"{LABELLED_PREFIX}dt={request_day:%Y-%m-%d}/{_key(key)}.parquet"


def labelled_import_key(name: str) -> str | None:
    """The import key of a `labelled_object` name, or None if the name is not one."""
    match = _LABELLED.match(name)
    return match.group(1) if match else None


def _key(key: str) -> str:
    _key_time(key)
    return token(key)


def _key_time(key: str) -> datetime:
    stamp, _, import_id = key.partition("-")
    token(import_id)
    return parse_time(stamp)


def report_object(check_id: str) -> str:
    """The HTML drift report of a check."""
    return f"{CHECKS_PREFIX}{token(check_id)}/report.html"


def summary_object(check_id: str) -> str:
    """The JSON summary of a check."""
    return f"{CHECKS_PREFIX}{token(check_id)}/summary.json"


def retrain_state_object(model_name: str) -> str:
    """A model's retrain-request state (see retraining.request_state)."""
    return f"{STATE_PREFIX}retrain-{token(model_name)}.json"


def message_record(message_id: str) -> str:
    """The marker of a Pub/Sub message the retrain trigger has handled."""
    return f"{MESSAGES_PREFIX}{token(message_id)}.json"


def run_record(key: str) -> str:
    """The outcome of the retrain for one request (or manual run)."""
    return f"{RUN_RECORDS_PREFIX}{token(key)}.json"


def request_log_day(when: datetime) -> str:
    """The prefix holding every request-log batch written on the day of `when` (UTC)."""
    return f"{REQUEST_LOG_PREFIX}dt={when:%Y-%m-%d}/"


def request_log_partitions(start: datetime, end: datetime) -> list[str]:
    """The hourly request-log partitions that may hold batches written in [start, end)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour < end:
        prefixes.append(request_log_partition(hour))
        hour += timedelta(hours=1)
    return prefixes
