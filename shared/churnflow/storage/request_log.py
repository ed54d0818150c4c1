"""The request-log record format, shared by the predict service (writer) and the monitor (reader).

One scored row is one flat JSON object; a batch of rows is one gzip-compressed JSON-lines object in
GCS, named by `layout.request_log_object`. Reading is tolerant: a corrupt line is counted and skipped,
a corrupt or truncated object raises CorruptLogObject so the caller can skip and count it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import orjson
from isal import igzip, isal_zlib

from churnflow.core import schema

REQUEST_ID = "request_id"
TIMESTAMP = "ts"
MODEL_VERSION = "model_version"
PROBABILITY = "churn_probability"
PREDICTION = "churn_prediction"
LATENCY_MS = "latency_ms"
INSTANCE = "instance"
SEQUENCE = "seq"
RECORD_FIELDS: tuple[str, ...] = (
    REQUEST_ID,
    TIMESTAMP,
    MODEL_VERSION,
    *schema.FEATURE_NAMES,
    PROBABILITY,
    PREDICTION,
    LATENCY_MS,
    INSTANCE,
    SEQUENCE,
)
Record = msgspec.defstruct(
    "Record",
    [(REQUEST_ID, str), (TIMESTAMP, float), (MODEL_VERSION, int)]
    + [(name, Any) for name in schema.FEATURE_NAMES]
    + [(PROBABILITY, float), (PREDICTION, int), (LATENCY_MS, float), (INSTANCE, str), (SEQUENCE, int)],
    gc=False,
)
"""One scored row as the writer builds it: the fields of RECORD_FIELDS, in that order.

`instance` names the writing process (random per start) and `seq` numbers its rows 1, 2, 3, ... with no
gap, so a reader can count rows lost mid-stream per instance (older records have neither field).
"""
CONTENT_TYPE = "application/x-ndjson"
COMPRESS_LEVEL = 1
"""ISA-L level (0-3) of the log objects."""


class CorruptLogObject(ValueError):
    """A request-log object that is not valid gzip (e.g. truncated)."""


@dataclass(frozen=True)
class DecodedBatch:
    """The records of one log object and how many of its lines were unreadable."""

    records: list[dict[str, Any]]
    bad_lines: int


_encoder = msgspec.json.Encoder()


def encode_lines(records: Iterable[Any]) -> bytes:
    """`Record`s (or any msgspec-encodable objects) as JSON lines, in one C-level pass (~0.3 µs per record)."""
    return _encoder.encode_lines(records)


def compress(lines: bytes | bytearray) -> bytes:
    """A log object from JSON lines: standard gzip, without a timestamp, written by ISA-L.

    The predict service compresses on its serving core: ISA-L's level 1 takes ~0.5 µs per row, a
    quarter of zlib's fastest level, and its objects are smaller (~90 bytes per row). Any gzip reader
    reads them. The call releases the GIL.
    """
    return igzip.compress(lines, COMPRESS_LEVEL, mtime=0)


def decompress(data: bytes) -> bytes:
    """The JSON lines of a log object; CorruptLogObject if it is not complete gzip."""
    try:
        return igzip.decompress(data)
    except (OSError, EOFError, zlib.error, isal_zlib.error) as error:  # type: ignore[misc]  # isal types `error` as an instance
        raise CorruptLogObject(f"not a complete gzip object: {error}") from error


def encode_batch(records: Iterable[Mapping[str, Any]]) -> bytes:
    """Serialise records (dicts) as one gzip-compressed JSON-lines object."""
    return compress(b"".join(orjson.dumps(record) + b"\n" for record in records))


def decode_batch(data: bytes) -> DecodedBatch:
    """Parse one log object; unreadable lines are counted, an unreadable object raises."""
    text = decompress(data)
    records: list[dict[str, Any]] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return DecodedBatch(records, bad)


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) of the log, in UTC: the batches whose names carry a time in it."""

    start: datetime
    end: datetime

    def contains(self, when: datetime) -> bool:
        """Whether `when` falls inside the window."""
        return self.start <= when < self.end
