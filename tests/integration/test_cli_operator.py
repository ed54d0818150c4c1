"""The operator's commands against the real local stack: `churnflow monitor check` and `churnflow status`.

A fresh bucket holds 2000 logged in-distribution requests of the session champion (`churn` v1); the
check runs through the command line, then `status` must show that check, the champion's metrics, a
pending retrain written to the state object, and the request log's batches.
"""

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from churnflow.monitoring.champion import load_champion
from churnflow.retraining import request_state
from churnflow.retraining.request_store import StateStore
from churnflow.settings import MonitorSettings
from churnflow.sim import scenarios
from churnflow.storage import gcs, layout
from factories import retrain_request

pytestmark = pytest.mark.integration
PROJECT = "churnflow-test"


def churnflow(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "churnflow.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def operated(stack_env, champion, dataset):
    """A fresh bucket with 2000 logged requests (4 batches) from 40 minutes ago, and the env to reach it."""
    bucket = f"ops-{uuid.uuid4().hex[:10]}"
    gcs.ensure_bucket(PROJECT, bucket)
    loaded = load_champion(MonitorSettings(bucket=bucket))
    start = datetime.now(UTC) - timedelta(minutes=40)
    rows = scenarios.window(dataset, "in_distribution", 2000, 0)
    records = list(scenarios.to_log_records(rows, loaded.scorer, loaded.version, start.timestamp(), 20))
    for name, body in scenarios.log_objects(records, 500, tag="ops-"):
        gcs.write_bytes(PROJECT, layout.gs_uri(bucket, name), body)
    env = {**os.environ, "CHURNFLOW_BUCKET": bucket, "CHURNFLOW_PROJECT": PROJECT}
    return env, bucket, start


def test_monitor_check_then_status_show_the_check_the_champion_the_retrain_and_the_log(operated, champion):
    env, bucket, start = operated
    checked = churnflow(env, "monitor", "check", "--json")
    assert checked.returncode == 0, checked.stderr
    summary = json.loads(checked.stdout)
    assert summary["status"] == "no_drift" and summary["trigger"]["action"] == "none"
    assert summary["window"]["valid_rows"] == 2000 and summary["champion_version"] == 1

    now = datetime.now(UTC)
    request = request_state.claim(_request(bucket), now)
    StateStore(PROJECT, bucket, "churn").write(request_state.confirm(request, now), 0)

    shown = churnflow(env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    status = json.loads(shown.stdout)
    assert status["problems"] == [] and status["unreadable"] == []
    assert status["champion"]["version"] == 1 and status["champion"]["alias"] == "champion"
    for name in ("roc_auc", "accuracy", "brier"):
        assert status["champion"]["metrics"][name] == pytest.approx(champion.metrics[name], abs=1e-6)
    assert status["last_check"]["check_id"] == summary["check_id"]
    assert status["last_check"]["status"] == "no_drift" and status["last_check"]["valid_rows"] == 2000
    assert status["retrain_pending"] is True
    assert status["retrain"]["status"] == "pending" and status["retrain"]["request_id"] == request.request_id
    assert status["request_log"]["batches"] == 4 and status["request_log"]["bytes"] > 10_000
    newest = datetime.fromisoformat(status["request_log"]["newest_batch_at"])
    assert start + timedelta(seconds=74) <= newest <= start + timedelta(seconds=76)  # the 4th batch: row 1500 at 20/s

    text = churnflow(env, "status")
    assert text.returncode == 0, text.stderr
    assert re.search(r"champion\s+v1\s", text.stdout)
    assert f"NO_DRIFT at {summary['checked_at'][:10]}" in text.stdout and "on 2000 rows of v1" in text.stdout
    assert "Retrain:     PENDING pending since" in text.stdout
    assert "Request log: 4 batches" in text.stdout

    human = churnflow(env, "monitor", "check")
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("check ") and "rows of v1's traffic" in human.stdout


def test_status_names_an_unreachable_registry_and_still_shows_the_bucket(operated):
    env, _, _ = operated
    shown = churnflow({**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "status", "--json")
    assert shown.returncode == 1
    status = json.loads(shown.stdout)
    assert status["unreadable"] == ["registry"] and status["champion"] is None
    assert status["request_log"]["batches"] == 4
    assert "churnflow status: registry (http://127.0.0.1:9)" in shown.stderr and "Traceback" not in shown.stderr


def _request(bucket):
    now = datetime.now(UTC)
    return retrain_request(
        champion_version=1, window_start=now, window_end=now, report_uri=f"gs://{bucket}/reports/r.html"
    )
