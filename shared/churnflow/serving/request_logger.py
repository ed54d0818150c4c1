"""Lossless, non-blocking request logging: write-ahead segments → batched GCS objects, local spool on failure.

Each scored row becomes one JSON line (`request_log.Record`, with the instance id and a per-instance
sequence number) copied into the current *segment* before its response is sent: a shared file
mapping in the spool directory, so the copy is a memcpy (no system call, no fsync) and the row is in
the page cache, where it outlives a killed process. By size and by age a task on the event loop
*seals* the segment (renames it to its final object name) and hands it to a worker thread that
compresses it (ISA-L gzip, which releases the GIL) and uploads it under that name
(`upload.MediaUploader`: one plain HTTP request, create-only); the delivered segment is zeroed and
reused (allocating one costs more than the rows' copies). When an upload fails the compressed
object is written to the spool under the same name, and uploaded again once GCS answers; beyond
`spool_max_bytes` a batch is dropped, counted and logged. A process that starts uploads what a dead
one left: sealed segments under their names, unsealed ones after sealing them, so a retry never
duplicates records (a segment locked with `flock` belongs to a live process and is left alone).
`stop()` flushes everything within `shutdown_s` and spools what could not be uploaded in time.

What survives what: the spool directory outlives the process but not the machine (on Cloud Run it
is an in-memory volume that dies with the instance). A process killed on a machine that keeps the
directory (the local stack, a VM, a restarted worker) loses no row answered 200; an instance that
dies loses at most what had not been uploaded (one flush window, plus the spool while GCS is down),
and a reader can count what it lost mid-stream from the gaps in each instance's sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import msgspec

from churnflow.serving.log_segment import OPEN, SEALED, SEGMENT_BYTES, Segment
from churnflow.serving.log_spool import Spool
from churnflow.storage import layout, request_log
from churnflow.storage.upload import ObjectExists

log = logging.getLogger(__name__)

Uploader = Callable[[str, bytes, float], None]
"""Creates an object holding one batch within a timeout (s); raises on failure (`ObjectExists`: stored already)."""

MIN_UPLOAD_S = 0.05
"""During shutdown no upload is started with less time than this left."""
SPARE_SEGMENTS = 2
"""Delivered segments kept (zeroed, still allocated and mapped) for the next rows: allocating costs ~3 ms."""

_Record = request_log.Record
_astuple = msgspec.structs.astuple
_encode = request_log.encode_lines


@dataclass
class LoggerStats:
    """Rows since start: accepted, recovered from a dead process's segments, stored in GCS, waiting in the
    spool (and its bytes), dropped at the spool cap, lost (cannot be encoded or spooled)."""

    accepted: int = 0
    recovered: int = 0
    uploaded: int = 0
    spooled: int = 0
    spool_bytes: int = 0
    dropped: int = 0
    lost: int = 0
    failed_uploads: int = 0


class RequestLogger:
    """Collects scored rows and writes them to GCS in batches, from a task on the serving event loop."""

    def __init__(
        self,
        upload: Uploader,
        spool_dir: Path,
        flush_rows: int,
        flush_age_s: float,
        *,
        upload_timeout_s: float = 5.0,
        shutdown_s: float = 5.0,
        spool_max_bytes: int = 64 << 20,
        write_ahead: bool = True,
    ):
        self.upload = upload
        self.spool_dir = spool_dir
        self.flush_rows = flush_rows
        self.flush_age_s = flush_age_s
        self.upload_timeout_s = upload_timeout_s
        self.shutdown_s = shutdown_s
        self.write_ahead = write_ahead
        self.stats = LoggerStats()
        self.spool = Spool(spool_dir, spool_max_bytes, self.stats)
        self._instance = os.urandom(8).hex()  # 64 random bits: no two instances share object names
        self._segment_numbers = count(1)
        self._seq = 0  # of the last row logged: consecutive per instance, so readers can count gaps
        self._segment: Segment | None = None
        self._sealed: list[Segment] = []
        self._spare: list[Segment] = []  # delivered, zeroed: appended by the worker thread, taken on the loop
        self._drained = 0
        self._deadline: float | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def log_one(
        self,
        request_id: str,
        ts: float,
        model_version: int,
        customer: msgspec.Struct,
        probability: float,
        prediction: bool,
        latency_ms: float,
    ) -> None:
        """Write one scored row (the customer as its schema Struct) to the current segment; call it before answering."""
        self._seq += 1
        self.stats.accepted += 1
        try:
            lines = _encode(
                (_Record(request_id, ts, model_version, *_astuple(customer), probability, int(prediction), latency_ms,
                         self._instance, self._seq),)
            )  # fmt: skip
        except Exception:
            self._lose(1)
            return
        self._append(lines, 1)

    def log_batch(
        self,
        request_id: str,
        ts: float,
        model_version: int,
        customers: Sequence[msgspec.Struct],
        probabilities: Sequence[float],
        predictions: Sequence[bool],
        latency_ms: float,
    ) -> None:
        """Write the rows scored by one batch request; their ids will be `<request_id>-<i>`."""
        first, instance = self._seq + 1, self._instance
        self._seq += len(customers)
        self.stats.accepted += len(customers)
        entries = [
            (f"{request_id}-{i}", ts, model_version, c, p, pr, latency_ms, instance, first + i)
            for i, (c, p, pr) in enumerate(zip(customers, probabilities, predictions, strict=True))
        ]
        try:
            lines, rows = _json_lines(entries), len(entries)
        except Exception:  # some row cannot be encoded: keep the others
            lines = b"".join(_json_lines_or_empty([entry]) for entry in entries)
            rows = lines.count(b"\n")
            self._lose(len(entries) - rows)
        if rows:
            self._append(lines, rows)

    def _lose(self, rows: int) -> None:
        self.stats.lost += rows
        self._drained += rows
        log.exception("request-log rows lost: cannot encode them", extra={"rows": rows})

    def _append(self, lines: bytes, rows: int) -> None:
        """Copy the lines into the current segment (a memcpy into the page cache), opening one when needed."""
        segment = self._segment
        end = len(lines) if segment is None else segment.size + len(lines)
        if segment is None or end > len(segment.mapping):
            segment = self._next_segment(len(lines))
            end = len(lines)
        segment.mapping[segment.size : end] = lines
        segment.size = end
        segment.rows += rows
        if segment.rows >= self.flush_rows:
            self._wake.set()

    def _next_segment(self, needed: int) -> Segment:
        """Seal the full segment (if any) and open the next, in memory if the spool directory refuses it."""
        self._seal()
        if self._segment is not None:  # empty, and too small for `needed`
            self._segment.discard()
        batch_id = f"{self._instance}-{next(self._segment_numbers):06d}"
        if self._spare and needed <= SEGMENT_BYTES:
            spare = self._spare.pop()
            try:
                spare.reuse(batch_id)
            except OSError:
                spare.discard()
            else:
                self._segment = spare
                return spare
        capacity = max(SEGMENT_BYTES, needed)
        directory = self.spool_dir if self.write_ahead else None
        try:
            self._segment = Segment.create(directory, batch_id, capacity)
        except OSError as error:
            log.error("request-log segment kept in memory only (no write-ahead file): %s", error)
            self._segment = Segment.create(None, batch_id, capacity)
        return self._segment

    def _seal(self) -> None:
        """Name the current segment's object and queue it for upload; rows go to a new segment from now on."""
        segment = self._segment
        if segment is None or not segment.rows:
            return
        self._segment = None
        self._seal_as_now(segment)
        self._sealed.append(segment)
        self._wake.set()

    def _seal_as_now(self, segment: Segment) -> None:
        name = layout.request_log_object(datetime.now(UTC), segment.batch_id)
        try:
            segment.seal(name)
        except OSError as error:  # the name is kept in memory: a successor would name these rows anew
            segment.name = name
            log.error("request-log segment %s not renamed to its object name: %s", segment.path, error)

    @property
    def pending(self) -> int:
        """Rows accepted but not yet handed to an upload or the spool."""
        return self.stats.accepted - self._drained

    def start(self) -> None:
        """Start flushing (on the running event loop); what dead processes left is uploaded first."""
        self.spool.open()
        self._recover()
        self._stopping = False
        self._wake = asyncio.Event()  # bound to this loop (TestClient or Mangum may run a new one per start)
        if self._sealed:
            self._wake.set()
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="request-log-flusher")

    def _recover(self) -> None:
        """Queue the segments of dead processes: sealed ones under their names, open ones sealed now."""
        paths = sorted(self.spool_dir.glob(f"*{OPEN}")) + sorted(self.spool_dir.glob(f"*{SEALED}"))
        for path in paths:
            try:
                segment = Segment.adopt(path)
            except OSError as error:
                log.error("request-log segment %s cannot be read: %s", path, error)
                continue
            if segment is None:  # a live process's
                continue
            if not segment.rows or (segment.name and (self.spool_dir / path.stem).exists()):
                segment.discard()  # empty, or spooled already (the process died before deleting the segment)
                continue
            if segment.name is None:
                self._seal_as_now(segment)
            self.stats.recovered += segment.rows
            self._sealed.append(segment)
            log.warning("request-log segment %s recovered", segment.name, extra={"rows": segment.rows})

    async def stop(self) -> None:
        """Flush every row within `shutdown_s`: upload what GCS takes in time, spool the rest; stop flushing."""
        began = time.monotonic()
        self._deadline = began + self.shutdown_s  # uploads under way end by then (upload timeout <= shutdown_s)
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
        for segment in [*self._spare, *([self._segment] if self._segment else [])]:
            segment.discard()
        self._segment, self._spare = None, []
        self._deadline = None
        self._loop = None
        log.info(
            "request log stopped in %.2f s (bound %.1f s); %d rows wait in the spool",
            time.monotonic() - began, self.shutdown_s, self.stats.spooled,
            extra={"shutdown_s": self.shutdown_s, "spooled": self.stats.spooled, "dropped": self.stats.dropped},
        )  # fmt: skip

    async def _run(self) -> None:
        last_upload = time.monotonic()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, last_upload + self.flush_age_s - time.monotonic()))
            self._wake.clear()
            segment = self._segment
            full = segment is not None and segment.rows >= self.flush_rows
            if self._sealed or full or time.monotonic() - last_upload >= self.flush_age_s:
                await self.flush()
                last_upload = time.monotonic()

    async def flush(self) -> None:
        """Seal the current segment; upload it and what waits (sealed segments, the spool) in a worker thread."""
        self._seal()
        sealed, self._sealed = self._sealed, []
        self._drained += sum(segment.rows for segment in sealed if not segment.recovered)
        if sealed or self.stats.spooled:
            await asyncio.to_thread(self._deliver, sealed)

    def _deliver(self, sealed: list[Segment]) -> None:
        """Upload spooled batches, then compress and upload the segments (or spool them if GCS is down)."""
        healthy = self.spool.drain(self._try_upload)
        for segment in sealed:
            assert segment.name is not None  # sealed
            data = request_log.compress(segment.mapping[: segment.size])
            if healthy and self._try_upload(segment.name, data):
                self.stats.uploaded += segment.rows
            else:
                healthy = False
                self.spool.put(segment.name, data, segment.rows)
            if len(self._spare) < SPARE_SEGMENTS and len(segment.mapping) == SEGMENT_BYTES and not segment.recovered:
                segment.clear()
                self._spare.append(segment)
            else:
                segment.discard()

    def _try_upload(self, name: str, data: bytes) -> bool:
        timeout = self.upload_timeout_s
        if self._deadline is not None:  # shutting down: what cannot be tried in time is spooled
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout < MIN_UPLOAD_S:
                return False
        try:
            self.upload(name, data, timeout)
        except ObjectExists:  # an earlier attempt landed (its answer was lost): names are unique per batch
            log.info("request-log batch %s was already stored", name)
        except Exception as error:  # any client or transport failure: the batch goes to the spool
            self.stats.failed_uploads += 1
            log.warning("request-log upload of %s failed: %s", name, error)
            return False
        return True


def _json_lines(entries: list[tuple[Any, ...]]) -> bytes:
    """Rows (id, ts, version, customer Struct, probability, prediction, latency, instance, seq) as JSON lines."""
    return _encode(
        [
            _Record(rid, ts, v, *_astuple(c), p, int(pr), lat, inst, seq)
            for rid, ts, v, c, p, pr, lat, inst, seq in entries
        ]
    )


def _json_lines_or_empty(entries: list[tuple[Any, ...]]) -> bytes:
    """`_json_lines`, or nothing for rows that cannot be encoded."""
    try:
        return _json_lines(entries)
    except Exception:
        return b""
