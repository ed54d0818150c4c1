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
import fcntl
import logging
import mmap
import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import msgspec

from churnflow.storage import layout, request_log
from churnflow.storage.upload import ObjectExists

log = logging.getLogger(__name__)

Uploader = Callable[[str, bytes, float], None]
"""Creates an object holding one batch within a timeout (s); raises on failure (`ObjectExists`: stored already)."""

SEGMENT_BYTES = 4 << 20
"""Space reserved for one segment (~7,000 rows); a larger batch gets a segment of its own size."""
OPEN = ".open"
"""Suffix of a segment still written to (`<instance>-<segment>.open`)."""
SEALED = ".wal"
"""Suffix of a sealed segment (its quoted object name + `.wal`); a spooled batch has no suffix."""
MIN_UPLOAD_S = 0.05
"""During shutdown no upload is started with less time than this left."""
SPARE_SEGMENTS = 2
"""Delivered segments kept (zeroed, still allocated and mapped) for the next rows: allocating costs ~3 ms."""
_ZEROS = bytes(SEGMENT_BYTES)

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


class Segment:
    """The JSON lines of one future log object, in a shared file mapping (or anonymous memory, without a file)."""

    def __init__(self, batch_id: str, mapping: mmap.mmap, path: Path | None = None, fd: int | None = None):
        self.batch_id = batch_id
        self.mapping = mapping
        self.path = path
        self.fd = fd
        self.size = 0
        self.rows = 0
        self.name: str | None = None
        self.recovered = False

    @classmethod
    def create(cls, directory: Path | None, batch_id: str, capacity: int) -> Segment:
        """A new segment file, locked and allocated up front (a full volume fails here, not as SIGBUS on a write)."""
        if directory is None:
            return cls(batch_id, mmap.mmap(-1, capacity))
        path = directory / f"{batch_id}{OPEN}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, capacity)
            # mapped in up front: no page fault on the request path
            return cls(batch_id, mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE), path, fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise

    @classmethod
    def adopt(cls, path: Path) -> Segment | None:
        """The complete lines of a segment a dead process left; None while a live process holds its lock."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            length = os.fstat(fd).st_size
        except BlockingIOError:
            os.close(fd)
            return None
        stem = path.name.removesuffix(path.suffix)
        segment = cls(stem, mmap.mmap(fd, length) if length else mmap.mmap(-1, 1), path, fd)
        written = segment.mapping.find(b"\0")  # the allocated rest is zeros; JSON lines have none
        end = length if written < 0 else written
        segment.size = segment.mapping.rfind(b"\n", 0, end) + 1  # a torn last line was never answered
        segment.rows = segment.mapping[: segment.size].count(b"\n")
        segment.recovered = True
        if path.suffix == SEALED:
            segment.name = urllib.parse.unquote(stem)
        return segment

    def seal(self, name: str) -> None:
        """Fix the object name; renaming the file records it, so whoever uploads the rows uses the same name."""
        if self.path is not None:
            sealed = self.path.with_name(urllib.parse.quote(name, safe="") + SEALED)
            os.rename(self.path, sealed)
            self.path = sealed
        self.name = name

    def clear(self) -> None:
        """Zero the written part; the file keeps its (sealed) name, so a successor finds it empty."""
        self.mapping[: self.size] = memoryview(_ZEROS)[: self.size]
        self.size = self.rows = 0

    def reuse(self, batch_id: str) -> None:
        """Take the next batch's rows (after `clear`)."""
        if self.path is not None:
            reopened = self.path.with_name(f"{batch_id}{OPEN}")
            os.rename(self.path, reopened)
            self.path = reopened
        self.batch_id, self.name, self.recovered = batch_id, None, False

    def discard(self) -> None:
        """Unmap, delete the file, release the lock."""
        self.mapping.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        if self.fd is not None:
            os.close(self.fd)


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
        self.spool_max_bytes = spool_max_bytes
        self.write_ahead = write_ahead
        self.stats = LoggerStats()
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
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        spooled = self._spooled()
        self.stats.spooled = sum(_rows_in(path.read_bytes()) for path in spooled)
        self.stats.spool_bytes = sum(path.stat().st_size for path in spooled)
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
        healthy = self._upload_spooled()
        for segment in sealed:
            assert segment.name is not None  # sealed
            data = request_log.compress(segment.mapping[: segment.size])
            if healthy and self._try_upload(segment.name, data):
                self.stats.uploaded += segment.rows
            else:
                healthy = False
                self._spool(segment.name, data, segment.rows)
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

    def _spooled(self) -> list[Path]:
        try:
            paths = list(self.spool_dir.iterdir())
        except OSError:  # no spool directory (yet): nothing waits in it
            return []
        return sorted(p for p in paths if p.is_file() and not p.name.endswith((".tmp", OPEN, SEALED)))

    def _spool(self, name: str, data: bytes, rows: int) -> None:
        if self.stats.spool_bytes + len(data) > self.spool_max_bytes:
            self.stats.dropped += rows
            log.error(
                "request-log batch %s dropped: the spool is full (%d + %d bytes > %d)",
                name, self.stats.spool_bytes, len(data), self.spool_max_bytes, extra={"rows": rows},
            )  # fmt: skip
            return
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
        self.stats.spool_bytes += len(data)
        log.warning("request-log batch %s spooled to %s", name, path, extra={"rows": rows})

    def _upload_spooled(self) -> bool:
        """Upload spooled batches oldest first; False as soon as one fails (GCS still down)."""
        for path in self._spooled():
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # another process sharing the directory uploaded it
                continue
            if not self._try_upload(urllib.parse.unquote(path.name), data):
                return False
            rows = _rows_in(data)
            path.unlink(missing_ok=True)
            self.stats.spooled -= rows
            self.stats.spool_bytes -= len(data)
            self.stats.uploaded += rows
            log.info("spooled request-log batch %s uploaded", path.name, extra={"rows": rows})
        return True


def _rows_in(data: bytes) -> int:
    return request_log.decompress(data).count(b"\n")


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
