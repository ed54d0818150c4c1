"""The request log's spool: compressed batches that GCS did not take, kept under their object names.

A batch is uploaded again under the same name once GCS answers, so a retry never duplicates rows;
beyond `max_bytes` a batch is dropped, counted and logged.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from churnflow.serving.log_segment import OPEN, SEALED
from churnflow.storage import request_log

if TYPE_CHECKING:
    from churnflow.serving.request_logger import LoggerStats

log = logging.getLogger(__name__)


class Spool:
    """Spooled batches in `directory`, counted in the logger's stats (`spooled`, `spool_bytes`, `dropped`, `lost`)."""

    def __init__(self, directory: Path, max_bytes: int, stats: LoggerStats):
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = stats

    def open(self) -> None:
        """Create the directory and count what an earlier process left in it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = self.paths()
        self.stats.spooled = sum(_rows_in(path.read_bytes()) for path in paths)
        self.stats.spool_bytes = sum(path.stat().st_size for path in paths)

    def paths(self) -> list[Path]:
        """The spooled batches, oldest name first (segments and half-written files excluded)."""
        try:
            paths = list(self.directory.iterdir())
        except OSError:  # no spool directory (yet): nothing waits in it
            return []
        return sorted(p for p in paths if p.is_file() and not p.name.endswith((".tmp", OPEN, SEALED)))

    def put(self, name: str, data: bytes, rows: int) -> None:
        """Keep one batch that GCS did not take (dropped beyond the cap, lost if it cannot be written)."""
        if self.stats.spool_bytes + len(data) > self.max_bytes:
            self.stats.dropped += rows
            log.error(
                "request-log batch %s dropped: the spool is full (%d + %d bytes > %d)",
                name, self.stats.spool_bytes, len(data), self.max_bytes, extra={"rows": rows},
            )  # fmt: skip
            return
        path = self.directory / urllib.parse.quote(name, safe="")
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

    def drain(self, upload: Callable[[str, bytes], bool]) -> bool:
        """Upload spooled batches oldest first; False as soon as one fails (GCS still down)."""
        for path in self.paths():
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # another process sharing the directory uploaded it
                continue
            if not upload(urllib.parse.unquote(path.name), data):
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
