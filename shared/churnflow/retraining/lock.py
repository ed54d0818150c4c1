"""One retrain at a time: a lock object in GCS taken with a generation precondition.

A lock older than its time-to-live is taken as abandoned (the job that held it died) and may be taken
over, again with a precondition, so exactly one job wins the takeover.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from churnflow.storage import gcs, layout


class LockHeld(RuntimeError):
    """Another retrain holds the lock."""


@contextmanager
def retrain_lock(project: str, bucket: str, owner: str, ttl_s: float) -> Iterator[None]:
    """Hold the retrain lock for the duration of the block; raises LockHeld if it is taken."""
    current, generation = gcs.read_json(project, bucket, layout.RETRAIN_LOCK)
    if current is not None and time.time() - float(current.get("acquired_at", 0)) < ttl_s:
        raise LockHeld(f"retrain lock held by {current.get('owner')!r} since {current.get('acquired_at')}")
    try:
        held = gcs.write_json(
            project, bucket, layout.RETRAIN_LOCK, {"owner": owner, "acquired_at": time.time()}, generation
        )
    except gcs.PreconditionFailed as error:
        raise LockHeld("another retrain took the lock first") from error
    try:
        yield
    finally:
        gcs.delete_object(project, bucket, layout.RETRAIN_LOCK, held)
