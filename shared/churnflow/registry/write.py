"""MLflow adapter for the training side: log a training run, register the model, move aliases.

The serving side never imports this module (it uses `registry.read`, which needs only the stdlib).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnflow.registry import tags as tag_names
from churnflow.settings import REPO_ROOT, CommonSettings

log = logging.getLogger(__name__)

SCORER_ARTIFACT = "compiled/scorer.json"
MODEL_ARTIFACT_NAME = "model"
DIGEST_CHARS = 36  # the longest dataset digest MLflow's store accepts


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version and what it was promoted to."""

    name: str
    version: int
    run_id: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class DatasetLineage:
    """A dataset a run used, for `mlflow.log_input`: its rows, where they are stored and their fingerprint."""

    frame: Any  # a pandas DataFrame of features and target
    name: str
    source_uri: str
    fingerprint: str
    context: str  # MLflow's input context: "training" or "evaluation"
    target: str | None = None


def log_inputs(inputs: Sequence[DatasetLineage]) -> None:
    """Log each dataset as a run input; its digest is the fingerprint cut to what MLflow stores (36 chars)."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    for lineage in inputs:
        with warnings.catch_warnings():
            # the schema forbids missing values (see log_and_register); a file:// URI resolves to one source type
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple")
            dataset = from_pandas(
                lineage.frame,
                source=lineage.source_uri,
                targets=lineage.target,
                name=lineage.name,
                digest=lineage.fingerprint[:DIGEST_CHARS],
            )
            mlflow.log_input(dataset, context=lineage.context, tags={tag_names.DATA_FINGERPRINT: lineage.fingerprint})


def log_files(files: Mapping[str, bytes]) -> None:
    """Log in-memory files under their artifact paths, in one upload of a temporary directory."""
    import mlflow

    if not files:
        return
    with tempfile.TemporaryDirectory(prefix="churnflow-artifacts-") as root:
        for name, content in files.items():
            path = Path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        mlflow.log_artifacts(root)


def check_reachable(tracking_uri: str, timeout_s: float) -> None:
    """Fail fast, with a clear message, when the MLflow server does not answer its health check."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        problem = str(getattr(error, "reason", error))
    raise RegistryUnavailable(
        f"MLflow tracking server at {tracking_uri} is unreachable ({problem}). "
        "Start the local stack with `churnflow local up` or set MLFLOW_TRACKING_URI."
    )


def configure_client(settings: CommonSettings) -> None:
    """Point MLflow at the registry with bounded retries, so an outage fails in seconds, not minutes."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(settings.registry_timeout_s, 1) * 6)))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    check_reachable(settings.mlflow_tracking_uri, settings.registry_timeout_s)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)


def code_version() -> str:
    """The git commit this code runs from (CHURNFLOW_CODE_VERSION in images), or 'unknown'."""
    if version := os.environ.get("CHURNFLOW_CODE_VERSION"):
        return version
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def pip_requirements() -> list[str]:
    """Exact pins of what the logged sklearn model needs to load (faster than MLflow's inference)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("scikit-learn", "pandas", "numpy", "skops")]


def log_and_register(
    settings: CommonSettings,
    experiment: str,
    model: Any,
    train_features: Any,
    scorer_artifact: dict[str, Any],
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    files: Mapping[str, bytes] | None = None,
    inputs: Sequence[DatasetLineage] = (),
) -> RegisteredVersion:
    """Log one training run (params, metrics, tags, input datasets, files such as evaluation plots,
    sklearn model, compiled scorer) and register it.

    The first version of a model gets the champion alias; later versions are left for the quality
    gate to promote.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    configure_client(settings)
    mlflow.set_experiment(experiment)
    client = MlflowClient()
    example = train_features.head(5)
    with warnings.catch_warnings():
        # the hint about integer columns and missing values does not apply: the schema forbids missing values
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        signature = infer_signature(example, model.predict_proba(example))
    with mlflow.start_run() as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        mlflow.log_dict(scorer_artifact, SCORER_ARTIFACT)
        log_inputs(inputs)
        log_files(files or {})
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT_NAME,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            pyfunc_predict_fn="predict_proba",
            registered_model_name=settings.model_name,
        )
    version = int(info.registered_model_version)
    version_tags = {key: value for key, value in tags.items() if key.startswith(tag_names.PREFIX)}
    version_tags[tag_names.SCORER_ARTIFACT] = SCORER_ARTIFACT
    for key, value in version_tags.items():
        client.set_model_version_tag(settings.model_name, str(version), key, value)
    for name, metric in metrics.items():
        client.set_model_version_tag(
            settings.model_name, str(version), f"{tag_names.METRIC_PREFIX}{name}", f"{metric:.6f}"
        )
    aliases: tuple[str, ...] = ()
    if champion_version(settings) is None:
        client.set_registered_model_alias(settings.model_name, settings.champion_alias, str(version))
        aliases = (settings.champion_alias,)
        log.info("version %s is the first: alias %r set", version, settings.champion_alias)
    return RegisteredVersion(settings.model_name, version, run.info.run_id, aliases)


def champion_version(settings: CommonSettings) -> int | None:
    """The version the champion alias points at, or None when there is none yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = MlflowClient().get_model_version_by_alias(settings.model_name, settings.champion_alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return int(found.version)


def set_alias(settings: CommonSettings, alias: str, version: int, tags: dict[str, str] | None = None) -> None:
    """Point `alias` at `version` (after tagging the version), e.g. champion for a promotion or a rollback."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(settings.model_name, str(version), key, value)
    client.set_registered_model_alias(settings.model_name, alias, str(version))
    log.info("alias %r -> %s v%s", alias, settings.model_name, version)
