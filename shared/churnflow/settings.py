"""Settings, read from the environment: one frozen object per deployable, built by its entry point.

Emulators are chosen by the standard variables (`STORAGE_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`,
`MLFLOW_TRACKING_URI`) that the client libraries read themselves; ChurnFlow's own knobs use the
`CHURNFLOW_` prefix.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import AliasChoices, ByteSize, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Section = TypeVar("Section", bound="DataclassInstance")

REPO_ROOT = Path(__file__).resolve().parents[2]


class CommonSettings(BaseSettings):
    """What every deployable shares: where the bucket, registry and topic are."""

    model_config = SettingsConfigDict(env_prefix="CHURNFLOW_", frozen=True, extra="ignore", populate_by_name=True)

    project: str = Field("churnflow-local", validation_alias=AliasChoices("CHURNFLOW_PROJECT", "GOOGLE_CLOUD_PROJECT"))
    bucket: str = "churnflow-local"
    model_name: str = "churn"
    champion_alias: str = "champion"
    retrain_topic: str = "retrain-requests"
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CHURNFLOW_MLFLOW_TRACKING_URI"),
    )
    registry_timeout_s: float = Field(5.0, gt=0, description="Per-call timeout towards MLflow.")
    outcomes_engine: Literal["duckdb", "bigquery"] = Field(
        "duckdb", description="What queries the request log and labels: DuckDB in-process, or BigQuery."
    )
    bigquery_dataset: str = Field("churnflow", description="BigQuery dataset of the request_log and labels tables.")
    bigquery_location: str = Field("EU", description="Location of the BigQuery dataset (where its jobs run).")
    labels_source: str = Field(
        "",
        description="Where outcomes come from: empty = the imported labels under labels/; else a table "
        "(project.dataset.table) or a SELECT of the engine returning request_id, churned, observed_at.",
    )
    duckdb_memory_limit: ByteSize = Field(
        ByteSize(512 << 20),
        description="The memory DuckDB may use in one process, e.g. 512MiB (it spills to disk beyond it); a label "
        "import gives a quarter to its own database (the labels file) and five eighths to the engine's query.",
    )
    outcomes_local_bytes: int = Field(
        256 << 20,
        ge=1 << 20,
        description="Most bytes of objects one DuckDB query downloads to local disk at a time; a larger scan "
        "is read in parts of this size, or (when it cannot be split) straight from GCS through gcsfs.",
    )
    outcomes_read_workers: int = Field(
        8,
        ge=1,
        le=10,
        description="Objects a DuckDB query downloads in parallel (the storage client pools 10 connections).",
    )
    labels_max_rows: int = Field(
        3_000_000, ge=1, description="Most labels one import may hold; split a larger file into several imports."
    )
    labels_max_request_age_days: int = Field(
        400, ge=0, description="A label may only name a request logged this many days before its import, or since."
    )
    decision_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Probability at or above which churn is predicted: by predict, and in training's metrics "
        "and confusion matrix.",
    )


class RequestTimingSettings(CommonSettings):
    """When a retrain may be requested: read by the monitor and the trigger alike (`request_state.Timing`)."""

    cooldown_s: float = Field(21_600.0, ge=0, description="No retrain request this long after a retrain finished.")
    claim_ttl_s: float = Field(300.0, gt=0, description="A trigger claim never confirmed expires after this.")
    request_ttl_s: float = Field(
        21_600.0, gt=0, description="A pending/running retrain older than this no longer blocks."
    )


class TrainSettings(CommonSettings):
    """Settings of `churnflow train` and the retrain job."""

    experiment: str = "churn-training"
    data_uri: str | None = Field(None, description="CSV path or gs:// URI; default: the bundled dataset.")
    test_size: float = Field(0.2, gt=0, lt=1)
    random_state: int = 42
    max_iter: int = Field(1000, gt=0)


class RetrainSettings(TrainSettings, RequestTimingSettings):
    """Settings of the retrain job and its Pub/Sub trigger."""

    auc_floor: float = Field(
        0.75, gt=0, lt=1, description="Gate without a champion: the challenger's base-check AUC must reach this."
    )
    auc_tolerance: float = Field(
        0.03, ge=0, lt=0.5, description="Gate: out-of-time AUC may be this much below the champion's."
    )
    auc_gain: float = Field(
        0.015, ge=0, lt=0.5, description="Gate: an out-of-time AUC gain counts beyond this; a smaller one is a tie."
    )
    brier_tolerance: float = Field(0.0005, ge=0, lt=1, description="Gate: a Brier gain up to this is a tie.")
    base_auc_tolerance: float = Field(
        0.15, ge=0, lt=0.5, description="Gate: base-check AUC may be this much below the champion's (collapse guard)."
    )
    gain_z: float = Field(
        2.0, ge=0, description="Gate: a Brier gain counts beyond this many standard errors of the paired difference."
    )
    min_oot_rows: int = Field(
        200, ge=1, description="Gate: fewer out-of-time labelled rows than this keep the champion (too few to judge)."
    )
    challenger_alias: str = "challenger"
    oot_fraction: float = Field(
        0.3, gt=0, lt=1, description="Newest share of the labelled recent traffic held out (by time) for the gate."
    )
    base_weight_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Base rows together weigh this share of the recent training rows (each at most 1).",
    )
    lock_ttl_s: float = Field(3_600.0, gt=0, description="A retrain lock older than this is taken as abandoned.")
    lock_wait_s: float = Field(
        900.0, ge=0, description="How long a job waits for a held retrain lock before it exits to be retried."
    )
    job_launcher: str = Field(
        "subprocess", pattern="^(subprocess|cloud-run)$", description="How the trigger starts the job."
    )
    region: str = "europe-west1"
    job_name: str = "churnflow-retrain"
    job_log_dir: Path | None = Field(None, description="Where a locally launched job writes its log.")
    retrain_max_rows: int = Field(
        200_000, ge=1, description="Most labelled recent requests a retrain reads (the newest ones)."
    )
    retrain_max_age_days: int = Field(90, ge=1, description="Labelled requests older than this are not read.")


class LocalStackSettings(BaseSettings):
    """Ports and paths of the local emulator stack (`churnflow local up`, the tests, the demo).

    The defaults match `docker-compose.local.yml`.
    """

    model_config = SettingsConfigDict(env_prefix="CHURNFLOW_LOCAL_", frozen=True, extra="ignore")

    state_dir: Path = REPO_ROOT / ".churnflow" / "local"
    host: str = "127.0.0.1"
    gcs_port: int = 4443
    pubsub_port: int = 8085
    mlflow_port: int = 5000
    predict_port: int = 8080
    monitor_port: int = 8081
    trigger_port: int = 8082
    scheduler_port: int = 8083
    dashboard_port: int = 8084
    schedule_every_s: float = Field(60.0, gt=0, description="How often the local scheduler calls the monitor.")
    predict_poll_interval_s: float = Field(
        5.0, gt=0, description="How often the local predict service polls the alias."
    )
    dashboard_refresh_s: float = Field(5.0, gt=0, description="How often the local dashboard looks for new checks.")
    startup_timeout_s: float = Field(60.0, gt=0)


class PredictSettings(CommonSettings):
    """Settings of the predict service (`functions/predict`)."""

    poll_interval_s: float = Field(30.0, gt=0, description="How often the champion alias is re-resolved.")
    risk_medium: float = Field(0.3, gt=0, lt=1, description="Probability from which the risk level is MEDIUM.")
    risk_high: float = Field(0.6, gt=0, lt=1, description="Probability from which the risk level is HIGH.")
    top_contributions: int = Field(5, ge=0, le=19, description="Feature contributions returned per prediction.")
    max_batch: int = Field(1000, gt=0, description="Most customers accepted by /predict/batch.")
    max_body_bytes: int = Field(2_000_000, gt=0, description="Largest request body accepted (else 413).")
    api_token: SecretStr | None = Field(None, description="Bearer token required on /predict* when set.")
    log_requests: bool = Field(True, description="Write every scored row to the request log in GCS.")
    log_flush_rows: int = Field(5000, gt=0, description="Flush the request log once this many rows wait.")
    log_flush_age_s: float = Field(5.0, gt=0, description="Flush the request log at least this often.")
    log_upload_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one request-log upload (at most log_shutdown_s)."
    )
    log_shutdown_s: float = Field(
        5.0,
        gt=0,
        description="Longest the request log's flush at shutdown takes; what is not uploaded by then is spooled.",
    )
    log_write_ahead: bool = Field(
        True, description="Copy each row into a segment file in spool_dir before answering (survives a killed process)."
    )
    spool_dir: Path = Field(
        Path("/tmp/churnflow-spool"),
        description="Request-log segments (write-ahead) and batches waiting while GCS is unreachable.",
    )
    spool_max_bytes: int = Field(
        64 << 20,
        gt=0,
        description="Most bytes of batches waiting in spool_dir; beyond it a batch is dropped (counted).",
    )

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> PredictSettings:
        if not self.risk_medium < self.risk_high:
            raise ValueError("risk_medium must be below risk_high")
        if self.log_upload_timeout_s > self.log_shutdown_s:
            raise ValueError(
                "log_upload_timeout_s must not exceed log_shutdown_s (an upload under way must end in time)"
            )
        return self


class MonitorSettings(RequestTimingSettings):
    """Settings of the drift monitor (`functions/monitor`): window, drift policy, sampling, trigger."""

    window_hours: float = Field(24.0, gt=0, description="Longest look-back of a check, in hours.")
    since_last_check: bool = Field(
        True, description="Start the window where the last decided check ended (else: the last window_hours)."
    )
    settle_s: float = Field(
        5.0, ge=0, description="The window ends this long before now, so batches still uploading are not skipped."
    )
    min_rows: int = Field(300, ge=1, description="Below this many valid rows a check decides nothing.")
    sample_rows: int = Field(20_000, ge=1_000, description="Rows drawn from a larger window for the drift test.")
    sample_objects: int = Field(64, ge=2, description="Most request-log batches read (time-stratified) per check.")
    sample_confidence: float = Field(0.99, gt=0, lt=1, description="Confidence of the stated sampling error bound.")
    sample_seed: int = Field(0, description="Seed of the row sampling, for reproducible checks.")
    read_workers: int = Field(16, ge=1, le=64, description="Request-log objects downloaded in parallel.")
    num_method: str = Field("wasserstein", description="Evidently drift method of numeric columns.")
    cat_method: str = Field("jensenshannon", description="Evidently drift method of categorical columns.")
    num_threshold: float = Field(0.1, gt=0, description="Drift threshold of numeric columns.")
    cat_threshold: float = Field(0.1, gt=0, description="Drift threshold of categorical columns.")
    drift_share: float = Field(0.5, gt=0, le=1, description="Rule `share`: Evidently's share of drifted features.")
    importance_share: float = Field(
        0.25, gt=0, le=1, description="Rule `importance`: share of the champion's feature importance that drifted."
    )
    prediction_threshold: float = Field(
        0.2, gt=0, description="Rule `prediction`: drift score of the predicted churn probability."
    )
    noise_factor: float = Field(
        4.0, ge=0, description="A score counts for the model-aware rules only above noise_factor·√(1/n+1/m)."
    )
    feature_share: float = Field(
        0.03, gt=0, le=1, description="Rule `feature`: features with this share of the importance count alone."
    )
    persistence_margin: float = Field(
        0.25, ge=0, description="A rule over its bar by less than this (relative) fires only if it was last time too."
    )
    publish_timeout_s: float = Field(30.0, gt=0, description="Timeout of the Pub/Sub publish.")
    monitoring_experiment: str = "churn-monitoring"
    label_lookback_days: int = Field(30, ge=0, description="Labelled requests this recent measure the champion.")
    performance_min_labels: int = Field(
        1000, ge=1, description="Performance rule: fewer labelled requests in the look-back decide nothing."
    )
    performance_confidence: float = Field(
        0.999, gt=0.5, lt=1, description="Performance rule: one-sided confidence of each bound (label noise)."
    )
    performance_auc_margin: float = Field(
        0.0, ge=0, lt=0.5, description="Performance rule: labelled AUC may sit this far under the expected."
    )
    performance_calibration_margin: float = Field(
        0.02, ge=0, lt=1, description="Performance rule: |mean predicted − observed churn| allowed beyond noise."
    )
    performance_brier_margin: float = Field(
        0.01, ge=0, lt=1, description="Performance rule: labelled Brier may sit this far over the expected."
    )
    performance_segment_margin: float = Field(
        0.025,
        ge=0,
        lt=1,
        description="Performance rule: |observed − predicted churn| of a segment allowed beyond noise (Bonferroni).",
    )
    performance_segment_min_rows: int = Field(
        200, ge=1, description="Performance rule: segments with fewer labelled requests are not tested on their own."
    )
    performance_reliability_margin: float = Field(
        0.005, ge=0, lt=1, description="Performance rule: |Spiegelhalter's statistic| / n allowed beyond noise."
    )
    report_index_size: int = Field(100, ge=1, description="Past checks kept in the report index.")
    history_size: int = Field(
        500,
        ge=1,
        description="Checks kept in the Evidently workspace's history (the oldest are deleted); the dashboard "
        "holds them all in memory, about 0.1 MB each.",
    )


class DashboardSettings(CommonSettings):
    """Settings of the history dashboard (Evidently's UI over the workspace in the bucket)."""

    dashboard_refresh_s: float = Field(30.0, gt=0, description="How often the dashboard looks for new checks.")


def section(settings: BaseSettings, kind: type[Section], prefix: str = "") -> Section:
    """A `kind` (a dataclass of thresholds) whose every field is the setting named `prefix` + its name."""
    return kind(**{field.name: getattr(settings, prefix + field.name) for field in dataclasses.fields(kind)})
