"""Drift reports in GCS: per check an HTML report and a JSON summary, an index of past checks and a
pointer to the latest report. The index and the pointer change only under generation preconditions,
so concurrent checks never lose each other's entries.

    reports/checks/<check_id>/report.html   Evidently's report
    reports/checks/<check_id>/summary.json  CheckSummary
    reports/index.json                      ReportIndex, newest first
    reports/latest.json                     IndexEntry of the latest check with a report
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from google.api_core.exceptions import NotFound
from pydantic import BaseModel, ConfigDict

from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.models import CheckStatus, CheckSummary
from churnflow.storage import gcs, layout

CHECKS_PREFIX = f"{layout.REPORTS_PREFIX}checks/"
INDEX_OBJECT = f"{layout.REPORTS_PREFIX}index.json"
LATEST_OBJECT = f"{layout.REPORTS_PREFIX}latest.json"
CHECK_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
ATTEMPTS = 8
Model = TypeVar("Model", bound=BaseModel)


def report_object(check_id: str) -> str:
    """The HTML report of a check."""
    return f"{CHECKS_PREFIX}{check_id}/report.html"


def summary_object(check_id: str) -> str:
    """The JSON summary of a check."""
    return f"{CHECKS_PREFIX}{check_id}/summary.json"


class IndexEntry(BaseModel):
    """One past check, as the index and `GET /view_report` list it."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    checked_at: datetime
    status: CheckStatus
    drift_share: float | None
    rules_fired: tuple[str, ...]
    champion_version: int
    window_start: datetime
    window_end: datetime
    valid_rows: int
    report_uri: str | None
    summary_uri: str

    @classmethod
    def of(cls, summary: CheckSummary) -> IndexEntry:
        """The index entry of a check's summary."""
        return cls(
            check_id=summary.check_id,
            checked_at=summary.checked_at,
            status=summary.status,
            drift_share=summary.drift.drift_share if summary.drift else None,
            rules_fired=tuple(summary.decision.rules_fired) if summary.decision else (),
            champion_version=summary.champion_version,
            window_start=summary.window.start,
            window_end=summary.window.end,
            valid_rows=summary.window.valid_rows,
            report_uri=summary.report_uri,
            summary_uri=summary.summary_uri,
        )


class ReportIndex(BaseModel):
    """The most recent checks, newest first."""

    entries: tuple[IndexEntry, ...] = ()

    def last_decided_end(self) -> datetime | None:
        """Where the window of the latest check that reached a decision ended."""
        return next((e.window_end for e in self.entries if e.status != CheckStatus.INSUFFICIENT_DATA), None)


class ReportStore:
    """Reads and writes the reports of one bucket."""

    def __init__(self, project: str, bucket: str):
        self.project = project
        self.bucket = bucket

    def _uri(self, name: str) -> str:
        return layout.gs_uri(self.bucket, name)

    def write_report(self, check_id: str, html: str) -> str:
        """Store a check's HTML report; returns its URI."""
        uri = self._uri(report_object(check_id))
        gcs.write_bytes(self.project, uri, html.encode(), "text/html; charset=utf-8")
        return uri

    def write_summary(self, summary: CheckSummary) -> None:
        """Store a check's JSON summary at its summary_uri."""
        gcs.write_bytes(
            self.project, summary.summary_uri, summary.model_dump_json(indent=2).encode(), "application/json"
        )

    def read_report(self, check_id: str) -> bytes | None:
        """A check's HTML report, or None for an unknown or malformed check id."""
        if not CHECK_ID.match(check_id):
            return None
        try:
            return gcs.read_bytes(self.project, self._uri(report_object(check_id)))
        except NotFound:
            return None

    def _read(self, name: str, model: type[Model]) -> tuple[Model | None, int]:
        value, generation = gcs.read_json(self.project, self.bucket, name)
        return (model.model_validate(value) if value is not None else None), generation

    def _update(self, name: str, model: type[Model], change: Callable[[Model | None], Model | None]) -> None:
        for _ in range(ATTEMPTS):
            try:
                current, generation = self._read(name, model)
                new = change(current)
                if new is not None:
                    gcs.write_json(self.project, self.bucket, name, new.model_dump(mode="json"), generation)
            except gcs.PreconditionFailed:
                continue
            return
        raise MonitorUnavailable(f"{name} kept changing during {ATTEMPTS} attempts")

    def read_index(self) -> ReportIndex:
        """The index of past checks (empty before the first)."""
        return self._read(INDEX_OBJECT, ReportIndex)[0] or ReportIndex()

    def read_latest(self) -> IndexEntry | None:
        """The latest check that wrote a report."""
        return self._read(LATEST_OBJECT, IndexEntry)[0]

    def record(self, summary: CheckSummary, keep: int) -> None:
        """Add a check to the index (keeping the `keep` newest) and, if it has a report, point latest at it."""
        entry = IndexEntry.of(summary)

        def add(index: ReportIndex | None) -> ReportIndex:
            entries = [e for e in (index.entries if index else ()) if e.check_id != entry.check_id]
            entries.append(entry)
            entries.sort(key=lambda e: e.checked_at, reverse=True)
            return ReportIndex(entries=tuple(entries[:keep]))

        def point(latest: IndexEntry | None) -> IndexEntry | None:
            return entry if latest is None or latest.checked_at <= entry.checked_at else None

        self._update(INDEX_OBJECT, ReportIndex, add)
        if entry.report_uri:
            self._update(LATEST_OBJECT, IndexEntry, point)
