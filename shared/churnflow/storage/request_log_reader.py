"""The one reader of the request log in GCS: list a prefix or a time window, read all of it or a sample.

Callers say what to read (a `Window`, or an object-name prefix such as `layout.REQUEST_LOG_PREFIX` or
`layout.request_log_day(...)`), never which objects: listing, parallel downloads and decoding stay
here. Network and GCS errors propagate (the caller fails and is retried); damaged objects and lines
are skipped and counted, never raised.
"""

from __future__ import annotations

import logging
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from churnflow.storage import gcs, layout, request_log
from churnflow.storage.request_log import Window
from churnflow.storage.request_log_sample import (
    ObjectSample,
    WindowSample,
    allocate,
    choose_objects,
    combine,
    sample_object,
)

log = logging.getLogger(__name__)

Scope = Window | str
"""What to read: the batches named in a time window (hourly partitions), or every object under a prefix."""


@dataclass(frozen=True)
class LogObject:
    """One request-log batch in GCS."""

    name: str
    size: int


@dataclass(frozen=True)
class Listing:
    """The batches of one or more scopes, in time order, and the objects of a window with no time in their name."""

    objects: list[LogObject]
    unnamed: int = 0


@dataclass(frozen=True)
class LoggedRecords:
    """Every record of the batches read, with the damage skipped on the way."""

    records: list[dict[str, Any]]
    corrupt_objects: int
    bad_lines: int


class RequestLogReader:
    """Reads the request log of one bucket, `workers` objects downloaded in parallel."""

    def __init__(self, project: str, bucket: str, workers: int = 16):
        self.project = project
        self.bucket = bucket
        self.workers = workers

    def list_objects(self, *scopes: Scope) -> Listing:
        """The batches of `scopes`: a window's are those its hourly partitions hold with a time inside it."""
        found: list[LogObject] = []
        unnamed = 0
        client = gcs.client(self.project)
        for scope in scopes:
            if isinstance(scope, str):
                blobs = sorted(client.list_blobs(self.bucket, prefix=scope), key=lambda blob: blob.name)
                found += [LogObject(blob.name, int(blob.size or 0)) for blob in blobs]
                continue
            for prefix in layout.request_log_partitions(scope.start, scope.end):
                for blob in client.list_blobs(self.bucket, prefix=prefix):
                    when = layout.request_log_time(blob.name)
                    if when is None:
                        unnamed += 1
                    elif scope.contains(when):
                        found.append(LogObject(blob.name, int(blob.size or 0)))
        return Listing(found, unnamed)

    def read_all(self, *scopes: Scope) -> LoggedRecords:
        """Every record of `scopes`, in time order; corrupt objects and lines are skipped and counted."""
        bucket = gcs.client(self.project).bucket(self.bucket)

        def decode(log_object: LogObject) -> request_log.DecodedBatch | None:
            try:
                return request_log.decode_batch(bucket.blob(log_object.name).download_as_bytes(raw_download=True))
            except request_log.CorruptLogObject:
                log.warning("skipping corrupt request-log object %s", log_object.name)
                return None

        with ThreadPoolExecutor(self.workers) as pool:
            batches = list(pool.map(decode, self.list_objects(*scopes).objects))
        return LoggedRecords(
            [record for batch in batches if batch for record in batch.records],
            corrupt_objects=sum(batch is None for batch in batches),
            bad_lines=sum(batch.bad_lines for batch in batches if batch),
        )

    def read_sample(self, window: Window, rows: int, objects: int, seed: int) -> WindowSample:
        """The window's batches, or a time-stratified sample of `objects` of them, with about `rows` of
        their lines decoded (see `request_log_sample`); the same seed and window draw the same sample."""
        listing = self.list_objects(window)
        found = listing.objects
        rng = np.random.default_rng([seed, int(window.start.timestamp())])
        chosen = [found[i] for i in choose_objects(len(found), objects, rng)]
        quotas = allocate([o.size for o in chosen], rows)
        bucket = gcs.client(self.project).bucket(self.bucket)

        def read(item: tuple[LogObject, int]) -> ObjectSample:
            log_object, quota = item
            data = bucket.blob(log_object.name).download_as_bytes(raw_download=True)
            return sample_object(data, quota, np.random.default_rng([seed, zlib.crc32(log_object.name.encode())]))

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            samples = list(pool.map(read, zip(chosen, quotas, strict=True)))
        return combine(window, samples, len(found), sum(o.size for o in found), listing.unnamed)
