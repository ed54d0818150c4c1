"""Windows of traffic built from real customer rows: in-distribution, or shifted in a known way.

The drift tests, the demo and the benchmarks draw their request windows here. A scenario draws rows
(with replacement, so a window may be larger than the dataset) from the cleaned dataset, over-samples
a segment of real customers and/or applies a transform, then shuffles. `to_log_records` turns a window
into request-log records as the predict service writes them, `log_objects` into its batch objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.storage import layout, request_log

Segment = Callable[[pd.DataFrame], "pd.Series[bool]"]
Transform = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Scenario:
    """A recipe for a window; `drifted` says whether the traffic really changed for the model."""

    name: str
    description: str
    drifted: bool
    segment: Segment | None = None
    share: float = 0.0
    transform: Transform | None = None


def price_change(factor: float) -> Transform:
    """Both charge columns multiplied by `factor` (kept within the schema's ranges)."""

    def change(rows: pd.DataFrame) -> pd.DataFrame:
        charges = {}
        for name in ("MonthlyCharges", "TotalCharges"):
            feature = schema.FEATURES[schema.FEATURE_NAMES.index(name)]
            assert isinstance(feature, schema.NumericFeature)
            charges[name] = (rows[name] * factor).round(2).clip(upper=feature.maximum)
        return rows.assign(**charges)

    return change


def _month_to_month_fibre(frame: pd.DataFrame) -> pd.Series[bool]:
    return (frame["Contract"] == "Month-to-month") & (frame["InternetService"] == "Fiber optic")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("in_distribution", "Random real customers, as in training.", drifted=False),
        Scenario(
            "month_to_month_fibre",
            "45% of the window are month-to-month fibre-optic customers (30% in training).",
            drifted=True,
            segment=_month_to_month_fibre,
            share=0.45,
        ),
        Scenario(
            "new_customers",
            "45% of the window are customers in their first year (tenure ≤ 12 months; 31% in training).",
            drifted=True,
            segment=lambda f: f["tenure"] <= 12,
            share=0.45,
        ),
        Scenario(
            "price_rise",
            "Random real customers whose monthly and total charges are 20% higher: only two columns move.",
            drifted=True,
            transform=price_change(1.2),
        ),
        Scenario(
            "gender_mix",
            "Only male customers: a large shift in a column the model barely uses.",
            drifted=False,
            segment=lambda f: f["gender"] == "Male",
            share=1.0,
        ),
    )
}


@dataclass(frozen=True)
class OutcomeChange:
    """A change in who churns, with the customers (the inputs) unchanged: within `segment` (None: everyone)
    each customer churns with probability `churn_rate`, or a `flip_share` of the labels is flipped (noise)."""

    name: str
    description: str
    segment: Segment | None = None
    churn_rate: float | None = None
    flip_share: float = 0.0

    def apply(self, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """`rows` (with Churn) with their outcomes changed as described."""
        churned = (rows[schema.TARGET] == schema.TARGET_POSITIVE).to_numpy()
        inside = np.ones(len(rows), bool) if self.segment is None else self.segment(rows).to_numpy()
        if self.churn_rate is not None:
            churned = np.where(inside, rng.random(len(rows)) < self.churn_rate, churned)
        if self.flip_share:
            churned = np.where(inside & (rng.random(len(rows)) < self.flip_share), ~churned, churned)
        return rows.assign(**{schema.TARGET: np.where(churned, schema.TARGET_POSITIVE, "No")})


OUTCOME_CHANGES: dict[str, OutcomeChange] = {
    o.name: o
    for o in (
        OutcomeChange("unchanged", "Real outcomes."),
        OutcomeChange(
            "fibre_churn_falls",
            "Month-to-month fibre-optic customers churn at 10% (55% in the data), e.g. after a network upgrade.",
            _month_to_month_fibre,
            churn_rate=0.10,
        ),
        OutcomeChange(
            "echeck_churn_falls",
            "Customers paying by electronic check churn at 20% (45% in the data).",
            lambda f: f["PaymentMethod"] == "Electronic check",
            churn_rate=0.20,
        ),
        OutcomeChange(
            "seniors_churn_rises",
            "Senior citizens churn at 60% (42% in the data).",
            lambda f: f["SeniorCitizen"] == 1,
            churn_rate=0.60,
        ),
        OutcomeChange(
            "long_tenure_churn_rises",
            "Customers of 4 years or more churn at 25% (10% in the data), e.g. a competitor's offer.",
            lambda f: f["tenure"] >= 48,
            churn_rate=0.25,
        ),
        OutcomeChange(
            "one_year_churn_rises",
            "Customers on a one-year contract churn at 30% (11% in the data).",
            lambda f: f["Contract"] == "One year",
            churn_rate=0.30,
        ),
        OutcomeChange(
            "no_internet_churn_rises",
            "Customers without internet service churn at 20% (7% in the data).",
            lambda f: f["InternetService"] == "No",
            churn_rate=0.20,
        ),
        OutcomeChange(
            "partners_churn_falls",
            "Customers with a partner churn at 10% (20% in the data).",
            lambda f: f["Partner"] == "Yes",
            churn_rate=0.10,
        ),
        OutcomeChange(
            "no_phone_churn_rises",
            "Customers without phone service, a feature the model barely uses, churn at 55% (25% in the data).",
            lambda f: f["PhoneService"] == "No",
            churn_rate=0.55,
        ),
        OutcomeChange(
            "fibre_label_noise_25",
            "25% of the fibre-optic customers' labels flipped at random (noise in one segment only).",
            lambda f: f["InternetService"] == "Fiber optic",
            flip_share=0.25,
        ),
        OutcomeChange("label_noise_5", "5% of the labels flipped at random.", flip_share=0.05),
        OutcomeChange("label_noise_15", "15% of the labels flipped at random.", flip_share=0.15),
    )
}


def _draw(frame: pd.DataFrame, scenario: Scenario, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    from_segment = round(scenario.share * rows) if scenario.segment is not None else 0
    picks = [rng.integers(0, len(frame), rows - from_segment)]
    if from_segment and scenario.segment is not None:
        members = np.flatnonzero(scenario.segment(frame).to_numpy())
        picks.append(rng.choice(members, from_segment))
    index = np.concatenate(picks)
    rng.shuffle(index)
    drawn = frame.iloc[index].reset_index(drop=True)
    return scenario.transform(drawn) if scenario.transform is not None else drawn


def window(frame: pd.DataFrame, scenario: Scenario | str, rows: int, seed: int) -> pd.DataFrame:
    """`rows` real customers (the 19 features) drawn from a cleaned `frame` as `scenario` says."""
    if isinstance(scenario, str):
        scenario = SCENARIOS[scenario]
    features = frame[list(schema.FEATURE_NAMES)].reset_index(drop=True)
    return _draw(features, scenario, rows, np.random.default_rng(seed))


def labelled_window(
    frame: pd.DataFrame, scenario: Scenario | str, rows: int, seed: int, outcome: OutcomeChange | str = "unchanged"
) -> pd.DataFrame:
    """Like `window`, with each customer's outcome (Churn) as `outcome` says."""
    scenario = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    outcome = OUTCOME_CHANGES[outcome] if isinstance(outcome, str) else outcome
    rng = np.random.default_rng(seed)
    rows_with_target = frame[[*schema.FEATURE_NAMES, schema.TARGET]].reset_index(drop=True)
    return outcome.apply(_draw(rows_with_target, scenario, rows, rng), rng)


def to_log_records(
    rows: pd.DataFrame,
    scorer: CompiledScorer,
    model_version: int,
    start_ts: float,
    per_second: float = 100.0,
    threshold: float = 0.5,
    id_prefix: str = "sim",
) -> Iterator[dict[str, object]]:
    """The request-log records the predict service would write for `rows`, `per_second` requests a second."""
    columns = {name: rows[name].tolist() for name in schema.FEATURE_NAMES}
    probabilities = scorer.batch_probabilities(columns).tolist()
    records = rows.to_dict("records")
    for i, (features, probability) in enumerate(zip(records, probabilities, strict=True)):
        yield {
            request_log.REQUEST_ID: f"{id_prefix}-{i:09d}",
            request_log.TIMESTAMP: start_ts + i / per_second,
            request_log.MODEL_VERSION: model_version,
            **features,
            request_log.PROBABILITY: probability,
            request_log.PREDICTION: int(probability >= threshold),
            request_log.LATENCY_MS: 0.05,
            request_log.INSTANCE: id_prefix,
            request_log.SEQUENCE: i + 1,
        }


@dataclass(frozen=True)
class UnderRepresentedSegment:
    """The closed loop's story on real rows: a first champion that barely saw a segment, then traffic from it.

    `base` holds every customer outside the segment and a small share of those in it: what the first
    champion trains on. `unseen` holds the segment's other customers, with their real outcomes: they
    arrive as production traffic, and their labels arrive later.
    """

    base: pd.DataFrame
    unseen: pd.DataFrame


LOOP_SEGMENT = "month_to_month_fibre"


def under_represented_segment(
    frame: pd.DataFrame, scenario: str = LOOP_SEGMENT, kept_share: float = 0.05, seed: int = 0
) -> UnderRepresentedSegment:
    """Split a cleaned frame so that only `kept_share` of the scenario's segment is in the base data."""
    segment = SCENARIOS[scenario].segment
    if segment is None:
        raise ValueError(f"scenario {scenario!r} defines no segment")
    members = segment(frame).to_numpy()
    order = np.random.default_rng(seed).permutation(np.flatnonzero(members))
    kept = order[: round(kept_share * len(order))]
    base = pd.concat([frame[~members], frame.iloc[kept]]).sort_index()
    unseen = frame.iloc[order[len(kept) :]]
    return UnderRepresentedSegment(base.reset_index(drop=True), unseen.reset_index(drop=True))


def log_objects(records: Sequence[dict[str, object]], batch_rows: int, tag: str = "sim") -> Iterator[tuple[str, bytes]]:
    """(object name, gzip body) of each batch of `batch_rows` records, named by its first record's time."""
    for number, first in enumerate(range(0, len(records), batch_rows)):
        batch = records[first : first + batch_rows]
        when = datetime.fromtimestamp(float(batch[0][request_log.TIMESTAMP]), UTC)  # type: ignore[arg-type]
        yield layout.request_log_object(when, f"{tag}{number:06d}"), request_log.encode_batch(batch)
