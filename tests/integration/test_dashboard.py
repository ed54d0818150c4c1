"""The history dashboard (Evidently's UI) over a workspace in the GCS emulator, served by a real server:
the checks' values come out of its API, new and deleted runs show up while it runs, and it is read-only."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from churnflow.monitoring import history
from churnflow.monitoring.dashboard import build_app
from churnflow.monitoring.models import CheckStatus, CheckSummary, LabelledPerformance, WindowStats
from churnflow.retraining.request_state import RequestOutcome
from churnflow.storage import gcs, layout
from conftest import uvicorn_server

pytestmark = pytest.mark.integration
PROJECT = "churnflow-test"
T0 = datetime(2026, 11, 5, 12, tzinfo=UTC)


def summary(hour, auc):
    """A check with too few rows (no drift test) whose labelled AUC is `auc`."""
    when = T0 + timedelta(hours=hour)
    window = dict.fromkeys(
        ("objects", "objects_read", "corrupt_objects", "unnamed_objects", "lines", "parsed_lines", "bad_lines"), 0
    )
    return CheckSummary(
        check_id=f"{layout.format_time(when)}-0000000{hour}",
        checked_at=when,
        status=CheckStatus.INSUFFICIENT_DATA,
        model_name="churn",
        champion_version=1,
        data_fingerprint="f" * 16,
        window=WindowStats(
            start=when, end=when, **window, bad_rows=0, valid_rows=100 + hour, tested_rows=0, sampled=False,
            design_effect=1.0, effective_rows=0, sample_error_bound=0.0, model_versions={},
        ),
        summary_uri="gs://b/s.json",
        trigger=RequestOutcome(action="none", reason="few rows"),
        performance=LabelledPerformance(
            model_version=1, rows=500, churn_rate=0.3, roc_auc=auc, accuracy=0.8, lookback_days=30
        ),
    )  # fmt: skip


def wait_until(condition, what, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while (value := condition()) is None or value is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def auc_series(client, pid):
    wanted = {"metric": history.CHECK_VALUE, "metric_labels": {"name": "labelled.roc_auc"}, "tags": [], "metadata": {}}
    body = {"series_filter": [wanted]}
    reply = client.post(f"/api/v2/snapshots/{pid}/data_series_batch", json=body)
    reply.raise_for_status()
    [series] = reply.json()["series"]
    return series["values"]


def test_dashboard_serves_the_history_and_follows_new_and_deleted_checks(stack_env):
    bucket = f"dashboard-{uuid.uuid4().hex[:10]}"
    gcs.ensure_bucket(PROJECT, bucket)
    store = history.History(layout.evidently_workspace_uri(bucket))
    pid = store.ensure_project("churn")
    for hour, auc in enumerate((0.84, 0.80)):
        store.add(pid, history.run_model(summary(hour, auc), None))

    with uvicorn_server(build_app(layout.evidently_workspace_uri(bucket), refresh_s=0.2)) as port:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        [project] = client.get("/api/projects").json()
        assert (project["id"], project["name"]) == (str(pid), "churn")
        assert auc_series(client, pid) == [0.84, 0.80]
        dashboard = client.get(f"/api/v2/dashboards/{pid}").json()
        assert {panel["title"] for panel in dashboard["panels"]} >= {"Drift share over time", "Calibration"}
        assert client.get("/").status_code == 200 and "<html" in client.get("/").text.lower()

        store.add(pid, history.run_model(summary(2, 0.70), None))
        assert wait_until(lambda: auc_series(client, pid) == [0.84, 0.80, 0.70], "the new check")
        store.prune(pid, keep=1)
        assert wait_until(lambda: auc_series(client, pid) == [0.70], "the deleted checks to go")
        assert len(client.get(f"/api/projects/{pid}/snapshots").json()) == 1

        assert client.delete(f"/api/projects/{pid}").status_code in (401, 403)  # read-only
    assert store.runs(pid) and store.state.read_project(pid).name == "churn"
