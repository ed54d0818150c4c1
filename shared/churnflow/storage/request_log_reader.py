"""The Python reader of the request log in GCS: list a time window and read a sample of it (drift checks).

Callers say what to read (a `Window`), never which objects: listing, parallel downloads and decoding
stay here. Network and GCS errors propagate (the caller fails and is retried); damaged objects and
lines are skipped and counted, never raised. Queries over labelled requests go to `outcomes` instead.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from churnflow.storage import gcs, layout
from churnflow.storage.request_log import Window
from churnflow.storage.request_log_sample import (
    ObjectSample,
    WindowSample,
    allocate,
    choose_objects,
    combine,
    sample_object,
)


@dataclass(frozen=True)
class LogObject:
    """One request-log batch in GCS."""

    name: str
    size: int


@dataclass(frozen=True)
class Listing:
    """The batches of a window, in time order, and the objects of its partitions with no time in their name."""

    objects: list[LogObject]
    unnamed: int = 0


class RequestLogReader:
    """Reads the request log of one bucket, `workers` objects downloaded in parallel."""

    def __init__(self, project: str, bucket: str, workers: int = 16):
        self.project = project
        self.bucket = bucket
        self.workers = workers

    def list_objects(self, window: Window) -> Listing:
        """The batches of `window`: those its hourly partitions hold with a time inside it."""
        found: list[LogObject] = []
        unnamed = 0
        client = gcs.client(self.project)
        for prefix in layout.request_log_partitions(window.start, window.end):
            for blob in client.list_blobs(self.bucket, prefix=prefix):
                when = layout.request_log_time(blob.name)
                if when is None:
                    unnamed += 1
                elif window.contains(when):
                    found.append(LogObject(blob.name, int(blob.size or 0)))
        return Listing(found, unnamed)

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
