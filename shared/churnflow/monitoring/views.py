"""The `GET /view_report` page (pure HTML rendering): the index of past checks and the chosen report."""

from __future__ import annotations

from html import escape

from churnflow.monitoring.reports import IndexEntry, ReportIndex

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem}table{border-collapse:collapse;font-size:.9rem}"
    "td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left}"
    ".drift{color:#b00020;font-weight:600}.no_drift{color:#1b5e20}.insufficient_data{color:#777}"
    "iframe{width:100%;height:80vh;border:1px solid #ccc;margin-top:1rem}"
)


def _row(entry: IndexEntry, link: str) -> str:
    share = f"{entry.drift_share:.2f}" if entry.drift_share is not None else "–"
    report = f'<a href="{link}?check={escape(entry.check_id)}">report</a>' if entry.report_uri else "–"
    return (
        f"<tr><td>{entry.checked_at:%Y-%m-%d %H:%M:%S}Z</td>"
        f'<td class="{entry.status}">{entry.status}</td><td>{share}</td>'
        f"<td>{escape(', '.join(entry.rules_fired)) or '–'}</td><td>v{entry.champion_version}</td>"
        f"<td>{entry.valid_rows}</td><td>{report}</td></tr>"
    )


def index_page(index: ReportIndex, shown: str | None, link: str = "view_report") -> str:
    """The page listing past checks (newest first), with the report of check `shown` embedded."""
    rows = "".join(_row(entry, link) for entry in index.entries) or '<tr><td colspan="7">no checks yet</td></tr>'
    frame = (
        f'<h2>Report {escape(shown)}</h2><iframe src="{link}?check={escape(shown)}&amp;raw=1"></iframe>'
        if shown
        else "<p>No drift report yet.</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ChurnFlow drift checks</title>"
        "<link rel='icon' href='data:,'>"  # no icon: the browser asks for none (no /favicon.ico 404)
        f"<style>{_STYLE}</style></head><body><h1>ChurnFlow drift checks</h1>"
        "<table><tr><th>checked</th><th>verdict</th><th>drift share</th><th>rules fired</th>"
        f"<th>champion</th><th>rows</th><th></th></tr>{rows}</table>{frame}</body></html>"
    )
