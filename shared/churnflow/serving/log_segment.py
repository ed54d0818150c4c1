"""Write-ahead segments of the request log: the JSON lines of one future object in a shared file mapping.

A copy into the mapping is a memcpy (no system call, no fsync) and lands in the page cache, so the
rows outlive a killed process; a file's suffix records whether its object name is fixed (sealed).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import urllib.parse
from pathlib import Path

SEGMENT_BYTES = 4 << 20
"""Space reserved for one segment (~7,000 rows); a larger batch gets a segment of its own size."""
OPEN = ".open"
"""Suffix of a segment still written to (`<instance>-<segment>.open`)."""
SEALED = ".wal"
"""Suffix of a sealed segment (its quoted object name + `.wal`); a spooled batch has no suffix."""
_ZEROS = bytes(SEGMENT_BYTES)


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
