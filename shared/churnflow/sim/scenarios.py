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


def _price_rise(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(
        MonthlyCharges=(rows["MonthlyCharges"] * 1.2).round(2), TotalCharges=(rows["TotalCharges"] * 1.2).round(2)
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("in_distribution", "Random real customers, as in training.", drifted=False),
        Scenario(
            "month_to_month_fibre",
            "45% of the window are month-to-month fibre-optic customers (30% in training).",
            drifted=True,
            segment=lambda f: (f["Contract"] == "Month-to-month") & (f["InternetService"] == "Fiber optic"),
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
            transform=_price_rise,
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


def window(frame: pd.DataFrame, scenario: Scenario | str, rows: int, seed: int) -> pd.DataFrame:
    """`rows` real customers (the 19 features) drawn from a cleaned `frame` as `scenario` says."""
    if isinstance(scenario, str):
        scenario = SCENARIOS[scenario]
    rng = np.random.default_rng(seed)
    features = frame[list(schema.FEATURE_NAMES)].reset_index(drop=True)
    from_segment = round(scenario.share * rows) if scenario.segment is not None else 0
    picks = [rng.integers(0, len(features), rows - from_segment)]
    if from_segment and scenario.segment is not None:
        members = np.flatnonzero(scenario.segment(features).to_numpy())
        picks.append(rng.choice(members, from_segment))
    index = np.concatenate(picks)
    rng.shuffle(index)
    drawn = features.iloc[index].reset_index(drop=True)
    return scenario.transform(drawn) if scenario.transform is not None else drawn


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
