"""Settings, read from the environment: one frozen object per deployable, built by its entry point.

Emulators are chosen by the standard variables (`STORAGE_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`,
`MLFLOW_TRACKING_URI`) that the client libraries read themselves; ChurnFlow's own knobs use the
`CHURNFLOW_` prefix.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class CommonSettings(BaseSettings):
    """What every deployable shares: where the bucket, registry and topic are."""

    model_config = SettingsConfigDict(env_prefix="CHURNFLOW_", frozen=True, extra="ignore")

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


class TrainSettings(CommonSettings):
    """Settings of `churnflow train` and the retrain job."""

    experiment: str = "churn-training"
    data_uri: str | None = Field(None, description="CSV path or gs:// URI; default: the bundled dataset.")
    test_size: float = Field(0.2, gt=0, lt=1)
    random_state: int = 42
    max_iter: int = Field(1000, gt=0)


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
    startup_timeout_s: float = Field(60.0, gt=0)
