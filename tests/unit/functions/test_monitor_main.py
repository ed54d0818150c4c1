"""The monitor function's thin handler (dispatch, status codes) and the report index page, without servers."""

import importlib.util
import json
from datetime import UTC, datetime

import flask
import pytest

from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.models import CheckStatus
from churnflow.monitoring.reports import IndexEntry, ReportIndex
from churnflow.monitoring.views import index_page
from churnflow.settings import REPO_ROOT
from unit.monitoring.test_metrics import summary

T0 = datetime(2026, 11, 5, 12, tzinfo=UTC)


@pytest.fixture
def main(monkeypatch):
    spec = importlib.util.spec_from_file_location("monitor_main", REPO_ROOT / "functions" / "monitor" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "configure_logging", lambda **_: None)  # keep pytest's log capture
    return module


def entry(check_id, status=CheckStatus.DRIFT, report=True):
    return IndexEntry(
        check_id=check_id,
        checked_at=T0,
        status=status,
        drift_share=0.21 if report else None,
        rules_fired=("importance", "prediction") if status == CheckStatus.DRIFT else (),
        champion_version=2,
        window_start=T0,
        window_end=T0,
        valid_rows=2000,
        report_uri=f"gs://b/reports/checks/{check_id}/report.html" if report else None,
        summary_uri=f"gs://b/reports/checks/{check_id}/summary.json",
    )


class FakeStore:
    def __init__(self, *_):
        pass

    def read_report(self, check_id):
        return b"<html>evidently</html>" if check_id == "20261105T120000Z-0123abcd" else None

    def read_latest(self):
        return entry("20261105T120000Z-0123abcd")

    def read_index(self):
        return ReportIndex(
            entries=(entry("20261105T120000Z-0123abcd"), entry("20261105T110000Z-89abcdef", report=False))
        )


def call(main, method, path, query=""):
    app = flask.Flask("test")
    with app.test_request_context(path, method=method, query_string=query):
        return main.monitor(flask.request)


def test_post_runs_a_check_and_returns_its_summary_and_counts_it(main, monkeypatch):
    monkeypatch.setattr(main, "run_check", lambda settings: summary(CheckStatus.NO_DRIFT, rules=()))
    body, status, headers = call(main, "POST", "/")
    assert (status, json.loads(body)["status"], headers["Content-Type"]) == (200, "no_drift", "application/json")
    text, status, headers = call(main, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'churnflow_monitor_checks_total{status="no_drift"} 1.0' in text.decode()


def test_upstream_failure_is_503_with_a_generic_body_and_the_details_logged(main, monkeypatch, caplog):
    detail = "RegistryError: http://10.8.0.7:5000/api/2.0/mlflow unreachable; gs://private-bucket/state"

    def unavailable(settings):
        raise MonitorUnavailable(detail)

    monkeypatch.setattr(main, "run_check", unavailable)
    body, status, _ = call(main, "POST", "/")
    assert status == 503 and "retry later" in json.loads(body)["error"]
    assert "10.8.0.7" not in body and "gs://" not in body and "mlflow" not in body.lower()
    assert detail in caplog.text

    monkeypatch.setattr(main, "run_check", lambda settings: 1 / 0)
    assert call(main, "POST", "/")[1] == 500
    events = [(r.event, r.status) for r in caplog.records if hasattr(r, "event")]
    assert events == [("drift_check", "unavailable"), ("drift_check", "error")]  # the alerts count these lines
    text = call(main, "GET", "/metrics")[0].decode()
    assert 'churnflow_monitor_checks_total{status="unavailable"} 1.0' in text
    assert 'churnflow_monitor_checks_total{status="error"} 1.0' in text


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/view_report"), ("DELETE", "/")])
def test_other_methods_are_refused(main, method, path):
    assert call(main, method, path)[1] == 405


def test_view_report_lists_checks_and_embeds_the_latest(main, monkeypatch):
    monkeypatch.setattr(main, "ReportStore", FakeStore)
    page, status, headers = call(main, "GET", "/view_report")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert page.count("<tr>") == 3  # header + two checks
    assert '<iframe src="view_report?check=20261105T120000Z-0123abcd&amp;raw=1">' in page
    assert '<a href="view_report?check=20261105T120000Z-0123abcd">report</a>' in page
    assert "importance, prediction" in page and page.count('<td class="drift">drift</td>') == 2


def test_view_report_serves_a_raw_report_or_404(main, monkeypatch):
    monkeypatch.setattr(main, "ReportStore", FakeStore)
    query = {"check": "20261105T120000Z-0123abcd", "raw": "1"}
    assert call(main, "GET", "/view_report", query)[:2] == (b"<html>evidently</html>", 200)
    assert call(main, "GET", "/view_report", {"check": "../../etc", "raw": "1"})[1] == 404


def test_index_page_escapes_and_handles_no_checks():
    assert "no checks yet" in index_page(ReportIndex(), None) and "No drift report yet" in index_page(
        ReportIndex(), None
    )
    page = index_page(ReportIndex(), '"><script>')
    assert "<script>" not in page and "&quot;&gt;&lt;script&gt;" in page
