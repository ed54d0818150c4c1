"""Reads a window of the request log from GCS: parallel downloads, sampled decoding (see `window`)."""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from churnflow.monitoring.window import (
    ObjectSample,
    Window,
    WindowSample,
    allocate,
    choose_objects,
    combine,
    hour_partitions,
    sample_object,
)
from churnflow.monitoring.window import object_time as name_time
from churnflow.storage import gcs


@dataclass(frozen=True)
class LogObject:
    """One request-log batch in GCS."""

    name: str
    size: int


def list_window(project: str, bucket: str, window: Window) -> tuple[list[LogObject], int]:
    """The batches whose names fall in the window, and how many objects had no time in their name."""
    found: list[LogObject] = []
    unnamed = 0
    client = gcs.client(project)
    for prefix in hour_partitions(window):
        for blob in client.list_blobs(bucket, prefix=prefix):
            when = name_time(blob.name)
            if when is None:
                unnamed += 1
            elif window.contains(when):
                found.append(LogObject(blob.name, int(blob.size or 0)))
    return found, unnamed


def read_window(
    project: str, bucket: str, window: Window, sample_rows: int, sample_objects: int, seed: int, workers: int
) -> WindowSample:
    """Read the window's batches, or a time-stratified sample of `sample_objects` of them, in parallel,
    and decode about `sample_rows` of their lines (see `window`).

    Network and GCS errors propagate (the check must fail and be retried); damaged objects and rows are
    counted, not raised.
    """
    objects, unnamed = list_window(project, bucket, window)
    rng = np.random.default_rng([seed, int(window.start.timestamp())])
    chosen = [objects[i] for i in choose_objects(len(objects), sample_objects, rng)]
    quotas = allocate([o.size for o in chosen], sample_rows)
    gcs_bucket = gcs.client(project).bucket(bucket)

    def read(item: tuple[LogObject, int]) -> ObjectSample:
        log_object, quota = item
        data = gcs_bucket.blob(log_object.name).download_as_bytes(raw_download=True)
        return sample_object(data, quota, np.random.default_rng([seed, zlib.crc32(log_object.name.encode())]))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        samples = list(pool.map(read, zip(chosen, quotas, strict=True)))
    return combine(window, samples, len(objects), sum(o.size for o in objects), unnamed)
