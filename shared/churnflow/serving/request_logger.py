"""Lossless, non-blocking request logging: memory queue → batched GCS objects, local spool on failure.

The serving path only appends one tuple per request to a deque. A task on the event loop drains it
by size and by age, encodes each batch with `requestlog.encode_batch` and uploads it from a worker
thread under `layout.request_log_object`. When an upload fails the encoded batch is written to the spool
directory under its final object name and uploaded again, under the same name, once GCS answers,
so a retry can never duplicate records. `stop()` flushes everything (lifespan shutdown, i.e. SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from churnflow import layout, requestlog

log = logging.getLogger(__name__)

Uploader = Callable[[str, bytes], None]
"""Stores one encoded batch under an object name; raises on failure."""

Row = dict[str, Any] | msgspec.Struct

CHUNK_ROWS = 256
"""Rows encoded between two yields to the event loop (~0.5 ms of work)."""


@dataclass
class LoggerStats:
    """Row counts since start: accepted by `log`, stored in GCS, waiting in the spool, lost."""

    accepted: int = 0
    uploaded: int = 0
    spooled: int = 0
    lost: int = 0
    failed_uploads: int = 0


class GcsUploader:
    """Uploads batches to the request-log bucket with a bounded timeout and no retries of its own."""

    def __init__(self, project: str, bucket: str, timeout_s: float):
        self.project = project
        self.bucket = bucket
        self.timeout_s = timeout_s

    def __call__(self, name: str, data: bytes) -> None:
        # Imported on first upload, in the flusher thread: google-cloud-storage costs ~0.17 s of cold start.
        from churnflow import gcs

        blob = gcs.client(self.project).bucket(self.bucket).blob(name)
        # retry=None: the client's default retries uploads for up to 120 s, blocking the flusher (and a
        # shutdown that has 10 s); the spool is the retry, and a re-upload under the same name is idempotent.
        blob.upload_from_string(data, content_type=requestlog.CONTENT_TYPE, timeout=self.timeout_s, retry=None)


class RequestLogger:
    """Collects scored rows and writes them to GCS in batches, from a task on the serving event loop."""

    def __init__(self, upload: Uploader, spool_dir: Path, flush_rows: int, flush_age_s: float):
        self.upload = upload
        self.spool_dir = spool_dir
        self.flush_rows = flush_rows
        self.flush_age_s = flush_age_s
        self.stats = LoggerStats()
        self._instance = os.urandom(4).hex()
        self._sequence = 0
        self._queue: deque[tuple[Any, ...]] = deque()
        self._drained = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def log(
        self,
        request_id: str,
        ts: float,
        model_version: int,
        rows: Sequence[Row],
        probabilities: Sequence[float],
        predictions: Sequence[bool],
        latency_ms: float,
    ) -> None:
        """Queue the rows scored by one request (never blocks; called on the event loop)."""
        self._queue.append((request_id, ts, model_version, rows, probabilities, predictions, latency_ms))
        self.stats.accepted += len(rows)
        if self.stats.accepted - self._drained >= self.flush_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows accepted but not yet handed to an upload or the spool."""
        return self.stats.accepted - self._drained

    def start(self) -> None:
        """Start flushing (on the running event loop); batches spooled earlier are uploaded first."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.stats.spooled = sum(_rows_in(path.read_bytes()) for path in self._spooled())
        self._stopping = False
        self._wake = asyncio.Event()  # bound to this loop (TestClient or Mangum may run a new one per start)
        self._task = asyncio.create_task(self._run(), name="request-log-flusher")

    async def stop(self) -> None:
        """Flush every queued row (to GCS, or to the spool when GCS fails) and stop flushing."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_age_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Encode what is queued, then upload it (and what waits in the spool) in a worker thread.

        Encoding runs here, on the event loop, in chunks between which requests are served: a
        flusher thread would compete with the loop for the GIL and stall requests for up to 5 ms
        (the interpreter's switch interval) at a time. Chunks are separate gzip members of one
        object, which gzip readers (`requestlog.decode_batch`) read as one stream.
        """
        entries = self._drain()
        parts: list[bytes] = []
        rows = 0
        chunk: list[tuple[Any, ...]] = []
        chunk_rows = 0
        for entry in entries:
            chunk.append(entry)
            chunk_rows += len(entry[3])
            if chunk_rows >= CHUNK_ROWS or entry is entries[-1]:
                # Level 1: this runs on the serving core, where each µs per row costs throughput.
                parts.append(requestlog.encode_batch(_records(chunk), compresslevel=1))
                rows += chunk_rows
                chunk, chunk_rows = [], 0
                await asyncio.sleep(0)
        if parts or self.stats.spooled:
            await asyncio.to_thread(self._deliver, b"".join(parts), rows)

    def _deliver(self, data: bytes, rows: int) -> None:
        """Upload spooled batches, then this one (or spool it if GCS is down); blocking I/O."""
        healthy = self._upload_spooled()
        if not rows:
            return
        self._sequence += 1
        name = layout.request_log_object(datetime.now(UTC), f"{self._instance}-{self._sequence:06d}")
        if healthy and self._try_upload(name, data):
            self.stats.uploaded += rows
        else:
            self._spool(name, data, rows)

    def _drain(self) -> list[tuple[Any, ...]]:
        entries = []
        rows = 0
        while self._queue:
            entry = self._queue.popleft()
            entries.append(entry)
            rows += len(entry[3])
        self._drained += rows
        return entries

    def _try_upload(self, name: str, data: bytes) -> bool:
        try:
            self.upload(name, data)
        except Exception as error:  # any client or transport failure: the batch goes to the spool
            self.stats.failed_uploads += 1
            log.warning("request-log upload of %s failed: %s", name, error)
            return False
        return True

    def _spooled(self) -> list[Path]:
        try:
            paths = list(self.spool_dir.iterdir())
        except OSError:  # no spool directory (yet): nothing waits in it
            return []
        return sorted(p for p in paths if p.is_file() and not p.name.endswith(".tmp"))

    def _spool(self, name: str, data: bytes, rows: int) -> None:
        path = self.spool_dir / urllib.parse.quote(name, safe="")
        temporary = path.with_name(path.name + ".tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError as error:
            self.stats.lost += rows
            log.error("request-log batch %s lost: cannot spool it: %s", name, error, extra={"rows": rows})
            return
        self.stats.spooled += rows
        log.warning("request-log batch %s spooled to %s", name, path, extra={"rows": rows})

    def _upload_spooled(self) -> bool:
        """Upload spooled batches oldest first; False as soon as one fails (GCS still down)."""
        for path in self._spooled():
            data = path.read_bytes()
            if not self._try_upload(urllib.parse.unquote(path.name), data):
                return False
            rows = _rows_in(data)
            path.unlink()
            self.stats.spooled -= rows
            self.stats.uploaded += rows
            log.info("spooled request-log batch %s uploaded", path.name, extra={"rows": rows})
        return True


def _rows_in(data: bytes) -> int:
    return gzip.decompress(data).count(b"\n")


def _records(entries: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Expand queued requests into request-log records (a batch's rows get ids `<request_id>-<i>`)."""
    records: list[dict[str, Any]] = []
    append = records.append
    for request_id, ts, model_version, rows, probabilities, predictions, latency_ms in entries:
        single = len(rows) == 1
        for i, row in enumerate(rows):
            append(
                {
                    requestlog.REQUEST_ID: request_id if single else f"{request_id}-{i}",
                    requestlog.TIMESTAMP: ts,
                    requestlog.MODEL_VERSION: model_version,
                    **(row if isinstance(row, dict) else msgspec.structs.asdict(row)),
                    requestlog.PROBABILITY: probabilities[i],
                    requestlog.PREDICTION: int(predictions[i]),
                    requestlog.LATENCY_MS: latency_ms,
                }
            )
    return records
