"""One retrain at a time: a lock object in GCS taken with a generation precondition.

A lock older than its time-to-live is taken as abandoned (the job that held it died) and may be taken
over, again with a precondition, so exactly one job wins the takeover. So is a lock of the same owner:
a retried execution (same message id) takes over the lock its dead predecessor left behind. A held
lock is waited for, with backoff, for up to `wait_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from churnflow.storage import gcs, layout

log = logging.getLogger(__name__)
MAX_POLL_S = 30.0


class LockHeld(RuntimeError):
    """Another retrain holds the lock."""


def _take(project: str, bucket: str, owner: str, ttl_s: float) -> int:
    """Write the lock for `owner` and return its generation; raises LockHeld if another owner holds it."""
    current, generation = gcs.read_json(project, bucket, layout.RETRAIN_LOCK)
    if (
        current is not None
        and current.get("owner") != owner
        and time.time() - float(current.get("acquired_at", 0)) < ttl_s
    ):
        raise LockHeld(f"retrain lock held by {current.get('owner')!r} since {current.get('acquired_at')}")
    try:
        return gcs.write_json(
            project, bucket, layout.RETRAIN_LOCK, {"owner": owner, "acquired_at": time.time()}, generation
        )
    except gcs.PreconditionFailed as error:
        raise LockHeld("another retrain took the lock first") from error


@contextmanager
def retrain_lock(project: str, bucket: str, owner: str, ttl_s: float, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the retrain lock for the duration of the block; raises LockHeld if it stays taken for `wait_s`."""
    deadline = time.monotonic() + wait_s
    poll_s = 1.0
    while True:
        try:
            held = _take(project, bucket, owner, ttl_s)
            break
        except LockHeld as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("waiting for the retrain lock (%.0f s left): %s", left, error, extra={"owner": owner})
            time.sleep(min(poll_s, left))
            poll_s = min(poll_s * 2, MAX_POLL_S)
    try:
        yield
    finally:
        gcs.delete_object(project, bucket, layout.RETRAIN_LOCK, held)
