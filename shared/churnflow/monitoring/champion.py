"""The champion a check monitors: its version, compiled scorer and drift reference (its training rows)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring.models import ExpectedQuality
from churnflow.registry import tags
from churnflow.registry.read import RegistryClient, RegistryError
from churnflow.settings import MonitorSettings
from churnflow.storage import gcs
from churnflow.training import data


class ReferenceMismatch(RegistryError):
    """The stored reference rows are not the ones the champion was trained on."""


@dataclass(frozen=True)
class Champion:
    """The registered version behind the champion alias and where its reference rows are."""

    version: int
    scorer: CompiledScorer
    fingerprint: str
    reference_uri: str
    expected: ExpectedQuality = ExpectedQuality()


def expected_quality(version_tags: dict[str, str]) -> ExpectedQuality:
    """The held-out metrics a version was registered with (absent or unreadable: None)."""

    def metric(name: str) -> float | None:
        try:
            value = float(version_tags[f"{tags.METRIC_PREFIX}{name}"])
        except (KeyError, ValueError):
            return None
        return value if value == value else None  # NaN (e.g. AUC on one class) is no expectation

    rows = metric("rows")
    return ExpectedQuality(
        roc_auc=metric("roc_auc"),
        brier=metric("brier"),
        rows=int(rows) if rows else None,
        churn_rate=metric("churn_rate"),
        brier_se=metric("brier_se"),
    )


def load_champion(settings: MonitorSettings) -> Champion:
    """Resolve the champion alias and fetch its compiled scorer (stdlib REST, no MLflow import)."""
    client = RegistryClient(settings.mlflow_tracking_uri, settings.registry_timeout_s)
    version = client.version_by_alias(settings.model_name, settings.champion_alias)
    fingerprint = version.tags.get(tags.DATA_FINGERPRINT)
    reference_uri = version.tags.get(tags.REFERENCE_URI)
    if not fingerprint or not reference_uri:
        raise RegistryError(
            f"{version.name} v{version.version} has no {tags.DATA_FINGERPRINT}/{tags.REFERENCE_URI} tags"
        )
    scorer = CompiledScorer(client.scorer_artifact(version))
    return Champion(version.version, scorer, fingerprint, reference_uri, expected_quality(version.tags))


def load_reference(project: str, champion: Champion) -> pd.DataFrame:
    """The champion's training rows (19 features + target), checked against its data fingerprint."""
    rows = pd.read_parquet(io.BytesIO(gcs.read_bytes(project, champion.reference_uri)))
    found = data.fingerprint(rows)
    if found != champion.fingerprint:
        raise ReferenceMismatch(
            f"{champion.reference_uri} has fingerprint {found[:12]}…, v{champion.version} was trained on "
            f"{champion.fingerprint[:12]}…"
        )
    return rows[list(schema.FEATURE_NAMES)]
