"""Typed results of a drift check: per-column drift, the policy's decision, the summary written to GCS."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from churnflow.retraining.request_state import RequestOutcome


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnDrift(_Frozen):
    """Evidently's verdict on one column: its method, score and threshold."""

    column: str
    kind: Literal["numeric", "categorical", "prediction"]
    method: str
    score: float
    threshold: float
    drifted: bool


class DriftResult(_Frozen):
    """Evidently's drift report reduced to what the policy reads."""

    columns: tuple[ColumnDrift, ...]
    drifted_features: int = Field(description="Feature columns whose Evidently drift test fails.")
    drift_share: float = Field(description="Share of the feature columns Evidently flags.")
    current_rows: int
    reference_rows: int
    predicted_churn_rate: float | None = Field(None, description="Mean churn probability the champion gave the window.")
    reference_churn_rate: float | None = Field(None, description="The same over the champion's reference rows.")

    def column(self, name: str) -> ColumnDrift:
        """The result of one column, by name."""
        for column in self.columns:
            if column.column == name:
                return column
        raise KeyError(name)

    @property
    def features(self) -> tuple[ColumnDrift, ...]:
        """The feature columns (without the prediction)."""
        return tuple(c for c in self.columns if c.kind != "prediction")


class Rule(StrEnum):
    """The rules of the drift policy, in the order they are reported."""

    SHARE = "share"
    IMPORTANCE = "importance"
    FEATURE = "feature"
    PREDICTION = "prediction"


class DriftDecision(_Frozen):
    """What the policy concluded and why: the rules that fired and the numbers they compared."""

    drifted: bool
    rules_fired: tuple[Rule, ...]
    reason: str
    rules_over_bar: tuple[Rule, ...] = Field(
        (), description="Rules at or over their bar, fired or not (the next check reads them for persistence)."
    )
    rules_held: tuple[Rule, ...] = Field(
        (), description="Rules over their bar by less than the margin, not fired: the last check was under it."
    )
    noise_floor: float = Field(description="Score below which a column is treated as sampling noise.")
    importance_drift_share: float = Field(description="Share of the champion's feature importance that drifted.")
    prediction_score: float
    counted_columns: tuple[str, ...] = Field(description="Features that count as drifted for the model-aware rules.")


class PerformanceRule(StrEnum):
    """The rules on the champion's labelled performance, in the order they are reported."""

    AUC = "labelled_auc"
    CALIBRATION = "labelled_calibration"
    BRIER = "labelled_brier"
    SEGMENT = "labelled_segment_calibration"
    RELIABILITY = "labelled_reliability"


class ExpectedQuality(_Frozen):
    """What the champion is expected to reach: its held-out metrics at registration (version tags)."""

    roc_auc: float | None = None
    brier: float | None = None
    rows: int | None = Field(None, description="Rows the metrics were measured on (their own sampling error).")
    churn_rate: float | None = None
    brier_se: float | None = Field(None, description="Standard error of the expected Brier score.")


class PerformanceDecision(_Frozen):
    """Whether the champion's labelled performance is worse than expected beyond its confidence bound, and why."""

    decided: bool = Field(description="False when too few labelled requests (or no test applies) to judge.")
    degraded: bool
    rules_fired: tuple[PerformanceRule, ...]
    reason: str
    labels: int
    z: float = Field(description="One-sided normal quantile of the configured confidence.")
    expected_auc: float | None = None
    auc_upper_bound: float | None = Field(None, description="Labelled AUC + z·SE (Hanley–McNeil).")
    calibration_gap: float | None = Field(None, description="Mean predicted probability − observed churn rate.")
    calibration_bound: float | None = Field(None, description="The gap beyond which calibration fires.")
    expected_brier: float | None = None
    brier_lower_bound: float | None = Field(None, description="Labelled Brier − z·SE.")
    segments_tested: int = Field(0, description="Segments with enough labelled requests to be tested on their own.")
    segment_z: float | None = Field(None, description="Two-sided normal quantile, Bonferroni-corrected for them.")
    worst_segment: str | None = Field(None, description="The segment furthest from calibration beyond its noise.")
    segment_gap: float | None = Field(None, description="Its mean predicted − observed churn.")
    segment_bound: float | None = Field(
        None, description="The |gap| beyond which it fires: margin + z·SE, z Bonferroni-corrected for the segments."
    )
    reliability_gap: float | None = Field(None, description="Spiegelhalter's Σ(y − p)(1 − 2p) / n.")
    reliability_bound: float | None = Field(None, description="The |gap| beyond which reliability fires.")


class CheckStatus(StrEnum):
    """The outcome of a check."""

    DRIFT = "drift"
    NO_DRIFT = "no_drift"
    INSUFFICIENT_DATA = "insufficient_data"


class WindowStats(_Frozen):
    """The window a check read, and what it found there (damage is counted, never raised)."""

    start: datetime
    end: datetime
    objects: int = Field(description="Request-log batches in the window.")
    objects_read: int
    corrupt_objects: int = Field(description="Unreadable batches among those read (skipped).")
    unnamed_objects: int = Field(description="Objects in the window's partitions with no time in their name.")
    lines: int = Field(description="Lines in the window (extrapolated by size when not all batches were read).")
    parsed_lines: int
    bad_lines: int = Field(description="Parsed lines that are not JSON (skipped).")
    bad_rows: int = Field(description="Parsed records that fail the schema (skipped).")
    valid_rows: int = Field(description="Valid rows in the window (estimated from the sample when sampled).")
    tested_rows: int = Field(description="Rows given to the drift test.")
    sampled: bool
    design_effect: float = Field(description="Kish's design effect of the two-stage sample (1: as good as random).")
    effective_rows: int = Field(description="tested_rows / design_effect.")
    sample_error_bound: float = Field(description="DKW bound, at the effective rows, on each column's CDF error.")
    model_versions: dict[int, int] = Field(description="Model versions that scored the tested rows.")


class SegmentCalibration(_Frozen):
    """The champion's calibration on one segment of the labelled requests."""

    feature: str = Field(description="A categorical feature, or `probability_bin`.")
    level: str
    rows: int
    observed_rate: float
    predicted_rate: float
    standard_error: float = Field(description="Of the observed rate if the probabilities were right: √Σp(1−p) / n.")

    @property
    def name(self) -> str:
        """`feature=level`, as reported."""
        return f"{self.feature}={self.level}"

    @property
    def gap(self) -> float:
        """Mean predicted − observed churn."""
        return self.predicted_rate - self.observed_rate

    def beyond_noise(self, z: float) -> float:
        """How far |gap| exceeds z standard errors (negative: within the noise)."""
        return abs(self.gap) - z * self.standard_error


class LabelledPerformance(BaseModel):
    """The champion's quality on labelled recent requests."""

    model_config = ConfigDict(frozen=True)

    model_version: int
    rows: int
    churn_rate: float
    roc_auc: float | None  # None when the labelled rows hold a single class
    accuracy: float  # of the served prediction
    mean_probability: float | None = None  # calibration: against churn_rate
    brier: float | None = None
    brier_variance: float | None = None  # of the per-request squared error, for the Brier score's bound
    reliability_gap: float | None = None  # Spiegelhalter's Σ(y − p)(1 − 2p) / n
    reliability_se: float | None = None  # its standard error if the probabilities were right
    segments: tuple[SegmentCalibration, ...] = ()  # calibration per categorical level and probability bin
    lookback_days: int
    unreadable_rows: int = 0  # log lines of the window that were not JSON records (skipped)
    skipped_objects: int = 0  # log objects of the window that were not complete gzip (skipped)


class CheckSummary(_Frozen):
    """The JSON summary of one check: the response body, the object in GCS and the MLflow run."""

    check_id: str
    checked_at: datetime
    status: CheckStatus
    model_name: str
    champion_version: int
    data_fingerprint: str
    window: WindowStats
    decision: DriftDecision | None = None
    drift: DriftResult | None = None
    report_uri: str | None = None
    summary_uri: str
    trigger: RequestOutcome
    performance: LabelledPerformance | None = Field(
        None, description="The champion's quality on labelled recent requests, when labels exist."
    )
    performance_decision: PerformanceDecision | None = Field(
        None, description="The performance rule's verdict on those requests (None: no labelled requests)."
    )
    mlflow_run_id: str | None = None
    duration_s: float = 0.0

    @property
    def retrain_rules(self) -> tuple[str, ...]:
        """Every rule, drift or performance, that fired: a retrain is requested when there is one."""
        drift = self.decision.rules_fired if self.status is CheckStatus.DRIFT and self.decision else ()
        known = self.performance_decision.rules_fired if self.performance_decision else ()
        return (*map(str, drift), *map(str, known))

    def headline(self) -> str:
        """One line for people: verdict, rows, drift share, rules fired, labelled quality, trigger."""
        share = f"drift share {self.drift.drift_share:.2f}" if self.drift else "no drift test"
        rules = ", ".join(self.decision.rules_fired) if self.decision and self.decision.rules_fired else "none"
        text = (
            f"{self.status.value.upper()} on {self.window.valid_rows} rows of v{self.champion_version}'s "
            f"traffic ({share}; drift rules fired: {rules})"
        )
        if (known := self.performance) is not None:
            auc = f"AUC {known.roc_auc:.3f}, " if known.roc_auc is not None else ""
            text += f"; on {known.rows} labelled requests: {auc}Brier {known.brier:.3f}"
        if (verdict := self.performance_decision) is not None:
            fired = ", ".join(verdict.rules_fired) or ("none" if verdict.decided else "not decided")
            text += f" (performance rules fired: {fired})"
        return f"{text}; trigger: {self.trigger.action}"
