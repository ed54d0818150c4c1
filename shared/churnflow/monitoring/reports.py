"""Drift reports in GCS: per check an HTML report and a JSON summary, an index of past checks and a
pointer to the latest report (names in storage.layout). The index and the pointer change only by
compare-and-swap, so concurrent checks never lose each other's entries.

    reports/checks/<check_id>/report.html   Evidently's report
    reports/checks/<check_id>/summary.json  CheckSummary
    reports/index.json                      ReportIndex, newest first
    reports/latest.json                     IndexEntry of the latest check with a report
"""

from __future__ import annotations

import html
from datetime import datetime

from google.api_core.exceptions import NotFound
from pydantic import BaseModel, ConfigDict

from churnflow.monitoring.models import CheckStatus, CheckSummary
from churnflow.storage import gcs, layout


class IndexEntry(BaseModel):
    """One past check, as the index and `GET /view_report` list it."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    checked_at: datetime
    status: CheckStatus
    drift_share: float | None
    rules_fired: tuple[str, ...]
    rules_over_bar: tuple[str, ...] = ()
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
            rules_fired=summary.retrain_rules,
            rules_over_bar=tuple(summary.decision.rules_over_bar) if summary.decision else (),
            champion_version=summary.champion_version,
            window_start=summary.window.start,
            window_end=summary.window.end,
            valid_rows=summary.window.valid_rows,
            report_uri=summary.report_uri,
            summary_uri=summary.summary_uri,
        )


def performance_section(summary: CheckSummary) -> str:
    """The HTML block at the top of a check's report: which rules fired and why, drift and performance."""
    rows = []
    if summary.decision is not None:
        fired = ", ".join(summary.decision.rules_fired) or "none"
        rows.append(("Drift rules fired", fired, summary.decision.reason))
    if summary.performance_decision is not None:
        verdict = summary.performance_decision
        fired = ", ".join(verdict.rules_fired) or ("none" if verdict.decided else "not decided")
        rows.append(("Performance rules fired", fired, verdict.reason))
    elif summary.performance is None:
        rows.append(("Performance rules fired", "not decided", "no labelled requests in the look-back"))
    body = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(fired)}</td><td>{html.escape(why)}</td></tr>"
        for name, fired, why in rows
    )
    return (
        f'<section id="churnflow-decision"><h2>ChurnFlow check {html.escape(summary.check_id)}: '
        f"{html.escape(str(summary.status))}, retrain rules fired: "
        f"{html.escape(', '.join(summary.retrain_rules) or 'none')}</h2><table>{body}</table>"
        f"{segment_table(summary)}</section>"
    )


def segment_table(summary: CheckSummary, shown: int = 8) -> str:
    """The segments furthest from calibration beyond their noise: where the champion is wrong, and by how much."""
    verdict, known = summary.performance_decision, summary.performance
    if verdict is None or known is None or verdict.segment_z is None:
        return ""
    z = verdict.segment_z
    segments = sorted(known.segments, key=lambda s: s.beyond_noise(z), reverse=True)
    body = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{s.rows}</td><td>{s.predicted_rate:.3f}</td>"
        f"<td>{s.observed_rate:.3f}</td><td>{s.gap:+.3f}</td>"
        f"<td>±{z * s.standard_error:.3f}</td></tr>"
        for s in segments[:shown]
    )
    return (
        f"<h3>Calibration by segment: the {min(shown, len(segments))} furthest of {len(segments)} beyond their noise "
        f"({verdict.segments_tested} large enough to be tested)</h3><table>"
        "<tr><th>segment</th><th>labelled requests</th><th>mean predicted</th><th>observed churn</th>"
        f"<th>gap</th><th>noise (z {z:.2f})</th></tr>{body}</table>"
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
        uri = self._uri(layout.report_object(check_id))
        gcs.write_bytes(self.project, uri, html.encode(), "text/html; charset=utf-8")
        return uri

    def write_summary(self, summary: CheckSummary) -> None:
        """Store a check's JSON summary at its summary_uri."""
        gcs.write_bytes(
            self.project, summary.summary_uri, summary.model_dump_json(indent=2).encode(), "application/json"
        )

    def read_report(self, check_id: str) -> bytes | None:
        """A check's HTML report, or None for an unknown or malformed check id."""
        try:
            return gcs.read_bytes(self.project, self._uri(layout.report_object(check_id)))
        except (ValueError, NotFound):
            return None

    def read_index(self) -> ReportIndex:
        """The index of past checks (empty before the first)."""
        return gcs.read_model(self.project, self.bucket, layout.REPORT_INDEX, ReportIndex)[0] or ReportIndex()

    def read_latest(self) -> IndexEntry | None:
        """The latest check that wrote a report."""
        return gcs.read_model(self.project, self.bucket, layout.LATEST_REPORT, IndexEntry)[0]

    def record(self, summary: CheckSummary, keep: int) -> None:
        """Add a check to the index (keeping the `keep` newest) and, if it has a report, point latest at it.

        Raises gcs.Contention when other checks keep winning the race for either object.
        """
        entry = IndexEntry.of(summary)

        def add(index: ReportIndex | None) -> ReportIndex:
            entries = [e for e in (index.entries if index else ()) if e.check_id != entry.check_id]
            entries.append(entry)
            entries.sort(key=lambda e: e.checked_at, reverse=True)
            return ReportIndex(entries=tuple(entries[:keep]))

        def point(latest: IndexEntry | None) -> IndexEntry | None:
            return entry if latest is None or latest.checked_at <= entry.checked_at else None

        gcs.compare_and_swap(self.project, self.bucket, layout.REPORT_INDEX, ReportIndex, add)
        if entry.report_uri:
            gcs.compare_and_swap(self.project, self.bucket, layout.LATEST_REPORT, IndexEntry, point)
