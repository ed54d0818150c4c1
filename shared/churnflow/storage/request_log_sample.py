"""A two-stage sample of a request-log window, and what it read (pure: the reader does the I/O).

A window holds the batches whose names carry a time inside it (batches are flushed every few seconds,
so whole batches are the unit). A large window is read as a two-stage sample: at most `sample_objects`
batches, one drawn at random from each of that many equal slices of the window's time order, then
about `sample_rows` lines drawn across them in proportion to their size. Only the drawn lines are
parsed, by a schema-checking decoder that reads just the model version and the 19 features. Kish's
design effect, estimated from how much the drawn batches differ, says how much less the sample is
worth than as many rows drawn at random (see `design_effect`); it is 1 when every batch is read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import pandas as pd

from churnflow.core import schema
from churnflow.storage import request_log
from churnflow.storage.request_log import Window


def choose_objects(count: int, limit: int, rng: np.random.Generator) -> list[int]:
    """Positions of the objects to read: all of them, or one at random from each of `limit` equal slices."""
    if count <= limit:
        return list(range(count))
    bounds = np.linspace(0, count, limit + 1).astype(int)
    return [int(rng.integers(low, high)) for low, high in zip(bounds[:-1], bounds[1:], strict=True)]


def allocate(sizes: Sequence[int], sample_rows: int) -> list[int]:
    """Lines to draw from each object, in proportion to its size, about `sample_rows` in all."""
    total = sum(sizes)
    if total == 0:
        return [0 for _ in sizes]
    return [math.ceil(sample_rows * size / total) for size in sizes]


def _feature_type(feature: schema.Feature) -> Any:
    if isinstance(feature, schema.CategoricalFeature):
        return Literal[feature.categories]
    return Annotated[feature.dtype, msgspec.Meta(ge=feature.minimum, le=feature.maximum)]


@cache
def _decoder() -> msgspec.json.Decoder[Any]:
    fields = [(request_log.MODEL_VERSION, int)] + [(f.name, _feature_type(f)) for f in schema.FEATURES]
    record = msgspec.defstruct("LoggedRow", fields, frozen=True)
    return msgspec.json.Decoder(record)


@dataclass
class ObjectSample:
    """What one request-log object contributed: its sampled valid rows and the damage found."""

    size: int
    rows: list[Any] = field(default_factory=list)
    lines: int = 0
    parsed: int = 0
    bad_lines: int = 0
    bad_rows: int = 0
    corrupt: bool = False


def _line_bounds(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the non-empty lines of `text`, found without splitting it."""
    ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 0x0A)
    if text and text[-1] != 0x0A:
        ends = np.append(ends, len(text))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else ends
    keep = ends > starts
    return starts[keep], ends[keep]


def sample_object(data: bytes, quota: int, rng: np.random.Generator) -> ObjectSample:
    """Decompress one gzip JSON-lines object and decode `quota` of its lines drawn at random.

    A line that is not JSON counts as a bad line, a record that fails the schema as a bad row; an
    object that is not complete gzip comes back `corrupt` with nothing else.
    """
    try:
        text = request_log.decompress(data)
    except request_log.CorruptLogObject:
        return ObjectSample(size=len(data), corrupt=True)
    starts, ends = _line_bounds(text)
    sample = ObjectSample(size=len(data), lines=len(starts))
    if quota < len(starts):
        picks = np.sort(rng.choice(len(starts), quota, replace=False))
        starts, ends = starts[picks], ends[picks]
    decode = _decoder().decode
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        sample.parsed += 1
        try:
            sample.rows.append(decode(text[start:end]))
        except msgspec.ValidationError:
            sample.bad_rows += 1
        except msgspec.DecodeError:
            sample.bad_lines += 1
    return sample


def _indicators(frame: pd.DataFrame) -> np.ndarray:
    """0/1 columns whose means describe the sample: each category's share, each numeric's quartiles."""
    columns = []
    for feature in schema.FEATURES:
        values = frame[feature.name].to_numpy()
        if isinstance(feature, schema.CategoricalFeature):
            columns += [values == category for category in feature.categories]
        else:
            columns += [values <= q for q in np.quantile(values, (0.25, 0.5, 0.75))]
    return np.column_stack(columns).astype(np.float64)


def design_effect(frame: pd.DataFrame, row_objects: np.ndarray, read_fraction: float) -> float:
    """Kish's design effect of a two-stage sample: the largest, over category shares and quartile
    indicators, of the variance between the drawn objects (ultimate-cluster estimator with finite
    population correction) over the variance of a simple random sample of as many rows; at least 1."""
    rows = len(frame)
    if read_fraction >= 1 or rows < 2:
        return 1.0
    groups, position = np.unique(row_objects, return_inverse=True)
    if len(groups) < 2:
        return float(rows)
    values = _indicators(frame)
    sizes = np.bincount(position).astype(np.float64)
    sums = np.stack([np.bincount(position, weights=values[:, k]) for k in range(values.shape[1])], axis=1)
    share = values.mean(axis=0)
    spread = ((sums - sizes[:, None] * share) / sizes.mean()) ** 2
    clustered = (1 - read_fraction) * spread.sum(axis=0) / (len(groups) * (len(groups) - 1))
    simple = share * (1 - share) / rows
    usable = (share > 0.01) & (share < 0.99)
    return max(1.0, float((clustered[usable] / simple[usable]).max(initial=1.0)))


@dataclass
class WindowSample:
    """The window's sampled rows as a frame of the 19 features, with counts of everything read.

    Damage (corrupt objects, bad lines, bad rows) is counted in what was read; `lines` and
    `valid_rows` extrapolate to the whole window by object size when only some objects were read.
    """

    window: Window
    frame: pd.DataFrame
    row_objects: np.ndarray
    objects: int
    objects_read: int
    unnamed_objects: int
    corrupt_objects: int
    bytes_total: int
    bytes_read: int
    lines_read: int
    parsed: int
    bad_lines: int
    bad_rows: int
    model_versions: dict[int, int]

    @property
    def sampled(self) -> bool:
        """Whether only part of the window was read or decoded."""
        return self.objects_read < self.objects or self.parsed < self.lines_read

    @property
    def lines(self) -> int:
        """Lines in the window's readable objects (extrapolated by size when not all were read)."""
        if self.objects_read == self.objects or not self.bytes_read:
            return self.lines_read
        return round(self.lines_read * self.bytes_total / self.bytes_read)

    @property
    def valid_rows(self) -> int:
        """Rows of the window that pass the schema (estimated from the sample when sampled)."""
        return round(self.lines * len(self.frame) / self.parsed) if self.parsed else 0

    @property
    def design_effect(self) -> float:
        """Kish's design effect of the sample (1 when every object was read)."""
        return design_effect(self.frame, self.row_objects, self.objects_read / max(self.objects, 1))


def combine(
    window: Window, samples: Sequence[ObjectSample], objects: int, bytes_total: int, unnamed_objects: int = 0
) -> WindowSample:
    """Merge the per-object samples of a window (`objects` listed, `bytes_total` in all) into one frame."""
    rows: list[Any] = [row for sample in samples for row in sample.rows]
    row_objects = np.repeat(np.arange(len(samples)), [len(sample.rows) for sample in samples])
    columns = {name: [getattr(row, name) for row in rows] for name in schema.FEATURE_NAMES}
    frame = pd.DataFrame(columns, columns=list(schema.FEATURE_NAMES))
    for feature in schema.FEATURES:
        if isinstance(feature, schema.NumericFeature):
            frame[feature.name] = frame[feature.name].astype(feature.dtype)
        elif all(isinstance(c, int) for c in feature.categories):
            frame[feature.name] = frame[feature.name].astype(int)
    versions = Counter(getattr(row, request_log.MODEL_VERSION) for row in rows)
    return WindowSample(
        window=window,
        frame=frame,
        row_objects=row_objects,
        objects=objects,
        objects_read=len(samples),
        unnamed_objects=unnamed_objects,
        corrupt_objects=sum(sample.corrupt for sample in samples),
        bytes_total=bytes_total,
        bytes_read=sum(sample.size for sample in samples),
        lines_read=sum(sample.lines for sample in samples),
        parsed=sum(sample.parsed for sample in samples),
        bad_lines=sum(sample.bad_lines for sample in samples),
        bad_rows=sum(sample.bad_rows for sample in samples),
        model_versions=dict(sorted(versions.items())),
    )
